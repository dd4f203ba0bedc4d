//! What goes in and out of the application: the request, the verdict, and
//! why a request was not executed at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::sql::ColumnInfo;
use crate::status::Status;

// POST /execute-classifier body (DESIGN §3), and the arguments of the
// `execute_classifier` tool: one type, so the API and the tool schemas
// cannot drift apart. (A `//` comment: a doc comment would become the
// schema's description that models read.)
/// One SQL query and the Python code that labels its rows.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// Exactly one read-only SQL query (SELECT, WITH, VALUES, UNION …). Use `?` (SQLite, MySQL) or `$1`
    /// (PostgreSQL) placeholders for values and pass them in `params`.
    pub sql_query: String,
    /// Positional bind parameters for the query: strings, numbers, booleans or null.
    #[serde(default)]
    pub params: Vec<Value>,
    /// Python source defining `def classify(df)`: `df` is a pandas DataFrame of the query's rows; return one
    /// label per row (list, numpy array or Series of str/int/float/bool/None), or
    /// {"labels": [...], "scores": [...]}. numpy, pandas, scikit-learn and scipy are available; there is no
    /// network, no subprocess and no file access outside a scratch directory.
    pub classifier_code: String,
    /// Name of the function to call (default `classify`).
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// Wall-clock limit in seconds for the code (default and maximum come from the policy: 30 and 120).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Memory limit in MB for the code (policy default 512, maximum 4096).
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Named policy (default `default`): decides allowed tables and limits.
    #[serde(default)]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub sql: Option<f64>,
    pub sandbox: Option<f64>,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub cpu_ms: Option<u64>,
    pub peak_memory_kb: Option<u64>,
}

/// The verdict of one request. Every key is always present.
#[derive(Debug, Clone, Serialize)]
pub struct ExecuteResponse {
    pub execution_id: Uuid,
    pub status: Status,
    pub row_count: Option<usize>,
    pub columns: Option<Vec<ColumnInfo>>,
    pub predictions: Option<Vec<Value>>,
    pub scores: Option<Vec<Option<f64>>>,
    pub label_counts: Option<BTreeMap<String, u64>>,
    pub error: Option<Value>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timings_ms: Timings,
    pub resources: Resources,
    pub policy: String,
    pub environment: String,
    /// How the sandboxed process ended (audit detail, not part of the body).
    #[serde(skip)]
    pub exit_signal: Option<i32>,
    /// What left the sandbox, for the audit record (not part of the body).
    #[serde(skip)]
    pub output: Option<Value>,
}

/// Why a request was not executed at all (non-200 answers).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("too many requests are waiting ({waiting}); retry shortly")]
    QueueFull { waiting: usize },
    #[error("sluice is starting up (warming the Python environment); retry shortly")]
    NotReady,
    #[error(
        "sluice is stopping (shutting down) and takes no new executions; retry shortly (another replica answers)"
    )]
    Stopping,
    #[error(
        "sluice stopped before execution {execution_id} finished: it was killed at the end of the shutdown \
         grace and recorded `interrupted`; retry the request"
    )]
    Interrupted { execution_id: uuid::Uuid },
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the audit log cannot be written, so nothing runs: {0}")]
    AuditUnavailable(String),
    #[error("the database is unavailable ({0}); retry shortly")]
    DatabaseUnavailable(String),
    /// A record that does not exist or that this key may not see.
    #[error("{0}")]
    NotFound(String),
    /// Reading the audit log failed (or a filter was malformed).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl From<crate::app::authz::Denied> for AppError {
    fn from(d: crate::app::authz::Denied) -> Self {
        AppError::Forbidden(d.0)
    }
}

impl AppError {
    /// The status an audit record gets for a request that did not run.
    pub fn status(&self) -> Status {
        match self {
            AppError::BadRequest { .. } => Status::BadRequest,
            AppError::QueueFull { .. } => Status::QueueFull,
            AppError::NotReady | AppError::Stopping => Status::NotReady,
            AppError::Interrupted { .. } => Status::Interrupted,
            AppError::Internal(_) => Status::InternalError,
            AppError::Forbidden(_) => Status::Forbidden,
            AppError::AuditUnavailable(_) => Status::InternalError,
            AppError::DatabaseUnavailable(_) => Status::DatabaseUnavailable,
            AppError::NotFound(_) => Status::BadRequest,
            AppError::Audit(_) => Status::InternalError,
        }
    }
}
