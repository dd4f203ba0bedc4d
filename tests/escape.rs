//! The escape suite (`support/escape_cases.rs`) in the built-in `default`
//! environment, on the shared test server.

mod common;

const ENVIRONMENT: &str = "default";

fn shared() -> &'static common::Server {
    common::shared()
}

async fn run(sql: &str, code: &str) -> serde_json::Value {
    common::run(sql, code).await
}

async fn run_with(body: serde_json::Value) -> serde_json::Value {
    common::run_with(body).await
}

include!("support/escape_cases.rs");
