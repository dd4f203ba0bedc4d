//! The escape suite (`support/escape_cases.rs`) again, in an operator's
//! environment: the repository's example `legacy-sklearn` (numpy 1.26,
//! pandas 2.2, scikit-learn 1.5, no pyarrow, started on demand), served
//! from `--environments` with every policy naming it. Every layer must
//! hold whatever the environment holds.

mod common;

use std::sync::OnceLock;

const ENVIRONMENT: &str = "legacy-sklearn";

fn shared() -> &'static common::Server {
    static S: OnceLock<common::Server> = OnceLock::new();
    S.get_or_init(|| {
        common::start(common::Options {
            environments: Some(common::repo_environments()),
            policies: Some(common::policies_dir_for(ENVIRONMENT)),
            ..Default::default()
        })
    })
}

async fn run(sql: &str, code: &str) -> serde_json::Value {
    run_with(serde_json::json!({"sql_query": sql, "classifier_code": code})).await
}

async fn run_with(body: serde_json::Value) -> serde_json::Value {
    let (status, v) = common::execute(&shared().base, body).await;
    assert!(status == 200 || status == 500, "HTTP {status}: {v}");
    // Each case runs where it is meant to.
    assert_eq!(v["environment"], ENVIRONMENT, "{v}");
    v
}

include!("support/escape_cases.rs");
