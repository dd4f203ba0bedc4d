//! Shared by the `sql_guard_*` tests: each engine gets a table `allowed`
//! beside a table `secret` that holds `MARKER`; these run SQL straight at the
//! engine with the parser switched off (`engine_refuses`) or through a
//! server's policy (`run_policy`, `expect`), and check the marker never comes
//! back.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::policy::{TableAllow, TableRef};
use sluice::sql::{Access, DataSource, FetchLimits, Rows, SqlError};

use crate::common::{self, OK, Server, assert_status, execute};

/// The value in `secret` that must never come back.
pub const MARKER: &str = "hunter2";

pub fn only_allowed() -> TableAllow {
    TableAllow::Only(vec![TableRef::parse("allowed").unwrap()])
}

pub fn limits(seconds: u64) -> FetchLimits {
    FetchLimits { max_rows: 1000, max_bytes: 0, timeout: Duration::from_secs(seconds) }
}

/// Everything a result carries, as text, to search for the marker.
pub fn leaked(r: &Result<Rows, SqlError>) -> bool {
    match r {
        Ok(rows) => String::from_utf8_lossy(&rows.arrow.to_vec().unwrap()).contains(MARKER),
        Err(_) => false,
    }
}

pub async fn engine_refuses(source: &DataSource, access: Access<'_>, sql: &str) -> String {
    let r = source.run_unchecked(sql, &[], access, limits(5)).await;
    assert!(!leaked(&r), "the engine let {sql} read the secret");
    match r {
        Err(e) => e.to_string(),
        Ok(rows) => panic!("the engine ran {sql} ({} rows)", rows.row_count),
    }
}

pub fn policies_with(name: &str, body: &str) -> PathBuf {
    let dir = common::policies_dir();
    std::fs::write(dir.join(format!("{name}.toml")), body).unwrap();
    dir
}

pub async fn run_policy(s: &Server, policy: &str, sql: &str) -> Value {
    let (status, v) =
        execute(&s.base, json!({"sql_query": sql, "classifier_code": OK, "policy": policy})).await;
    assert_eq!(status, 200, "{sql}: {v}");
    assert!(!v.to_string().contains(MARKER), "{sql} leaked the secret: {v}");
    v
}

pub async fn expect(s: &Server, policy: &str, sql: &str, status: &str) -> Value {
    let v = run_policy(s, policy, sql).await;
    assert_eq!(v["status"], status, "{sql}: {}", v["error"]);
    assert_status(&v, status);
    v
}
