//! What the store holds and hands out: a record, the filters and pages of
//! a listing, and the one column list every query reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::keys;

/// One audit record (DESIGN §3 `GET /audit`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub execution_id: String,
    pub status: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub principal: String,
    pub client_addr: Option<String>,
    pub policy: Option<String>,
    pub environment: Option<String>,
    pub sql_query: Option<String>,
    pub sql_sha256: Option<String>,
    pub params: Option<Value>,
    pub classifier_code: Option<String>,
    pub code_sha256: Option<String>,
    pub error: Option<Value>,
    pub row_count: Option<i64>,
    pub timings_ms: Option<Value>,
    pub resources: Option<Value>,
    pub exit_signal: Option<i64>,
    pub blocked_syscall: Option<String>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
    /// Absent in records written before sluice kept it (their hash does
    /// not cover it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// `GET /audit` filters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub status: Option<String>,
    pub principal: Option<String>,
    pub policy: Option<String>,
    pub code_sha256: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Text searched for in the SQL and the code.
    #[serde(default)]
    pub q: Option<String>,
    /// Set by the server, never by the query: a key limited to some
    /// policies sees records of those policies and its own, nothing else.
    #[serde(skip)]
    pub scope: Option<Scope>,
}

/// What a policy-limited key may see of the audit log.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub policies: Vec<String>,
    /// The key's own label (`name (key id)`): its own records stay visible.
    pub principal: String,
}

impl Scope {
    /// `None` for a key that may use every policy.
    pub fn of(p: &keys::Principal) -> Option<Scope> {
        p.policies.as_ref().map(|ps| Scope { policies: ps.clone(), principal: p.label() })
    }

    pub fn sees(&self, r: &Record) -> bool {
        r.principal == self.principal || r.policy.as_ref().is_some_and(|p| self.policies.contains(p))
    }
}

/// A page of records, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub records: Vec<Record>,
    pub next_cursor: Option<String>,
}

pub(super) const COLUMNS: &str = "execution_id, status, created_at, finished_at, principal, client_addr, policy, environment, \
    sql_query, sql_sha256, params, classifier_code, code_sha256, error, row_count, timings_ms, resources, \
    exit_signal, blocked_syscall, prev_hash, hash, output";

pub(super) fn json_col(row: &AnyRow, col: &str) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = row.try_get(col)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

pub(super) fn record_from(row: &AnyRow) -> Result<Record, sqlx::Error> {
    Ok(Record {
        execution_id: row.try_get("execution_id")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        principal: row.try_get("principal")?,
        client_addr: row.try_get("client_addr")?,
        policy: row.try_get("policy")?,
        environment: row.try_get("environment")?,
        sql_query: row.try_get("sql_query")?,
        sql_sha256: row.try_get("sql_sha256")?,
        params: json_col(row, "params")?,
        classifier_code: row.try_get("classifier_code")?,
        code_sha256: row.try_get("code_sha256")?,
        error: json_col(row, "error")?,
        row_count: row.try_get("row_count")?,
        timings_ms: json_col(row, "timings_ms")?,
        resources: json_col(row, "resources")?,
        exit_signal: row.try_get("exit_signal")?,
        blocked_syscall: row.try_get("blocked_syscall")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        output: json_col(row, "output")?,
    })
}

/// SQL assembled in this module from constant text and `$n` placeholders;
/// every value is bound, never formatted in.
pub(super) fn trusted(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

pub(super) fn to_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}
