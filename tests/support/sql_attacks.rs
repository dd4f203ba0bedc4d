//! Shared by the `sql_attacks_*` tests: the `attack` policy (a short SQL
//! timeout, a row limit, and the tables a query may read) and ways to run
//! SQL under it and check the verdict.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::common::{self, OK, Server, assert_status, execute};

pub fn policies() -> PathBuf {
    let dir = common::policies_dir();
    std::fs::write(
        dir.join("attack.toml"),
        "[limits]\nsql_timeout_s = 1\nmax_rows = 1000\n[tables]\nallow = [\"accounts\", \"types\", \"generate_series\", \"seq\"]\n",
    )
    .unwrap();
    dir
}

pub async fn run(s: &Server, sql: &str) -> Value {
    let (status, v) =
        execute(&s.base, json!({"sql_query": sql, "classifier_code": OK, "policy": "attack"})).await;
    assert!(status == 200, "HTTP {status} for {sql}: {v}");
    v
}

pub async fn expect(s: &Server, sql: &str, status: &str) {
    let v = run(s, sql).await;
    assert_eq!(v["status"], status, "{sql}: {}", v["error"]);
    assert_status(&v, status);
}
