//! Filling the verdict: the SQL stage's errors, the sandbox's outcome, and
//! the policy's `[output]` bounds on what leaves.

use serde_json::{Value, json};
use uuid::Uuid;

use super::types::{ExecuteResponse, Resources, Timings};
use crate::executor::Outcome;
use crate::policy::Policy;
use crate::sql::SqlError;
use crate::status::Status;

/// Bytes of a database's error message passed on to the caller.
const MAX_DB_MESSAGE: usize = 2048;

impl ExecuteResponse {
    pub(super) fn new(id: Uuid, policy: &Policy) -> Self {
        Self {
            execution_id: id,
            status: Status::InternalError,
            row_count: None,
            columns: None,
            predictions: None,
            scores: None,
            label_counts: None,
            error: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            timings_ms: Timings { sql: None, sandbox: None, total: 0.0 },
            resources: Resources { cpu_ms: None, peak_memory_kb: None },
            policy: policy.name.clone(),
            environment: policy.environment.clone(),
            exit_signal: None,
            output: None,
        }
    }

    /// Set a non-success status; `error` gets its `category`.
    pub(super) fn set_error(&mut self, status: Status, mut error: Value) {
        if let Value::Object(m) = &mut error {
            m.insert("category".into(), json!(status.as_str()));
        }
        self.status = status;
        self.error = Some(error);
        self.predictions = None;
        self.scores = None;
        self.label_counts = None;
    }

    pub(super) fn set_sql_error(&mut self, e: SqlError) {
        let (status, detail) = match &e {
            SqlError::Rejected(r) => {
                (Status::SqlRejected, json!({"message": format!("query rejected: {r}"), "reason": r.0}))
            }
            SqlError::Params { .. } => {
                (Status::SqlError, json!({"message": e.to_string(), "db_message": e.to_string()}))
            }
            SqlError::Database { message } => {
                // The database may quote values in its message; keep it short.
                let message = crate::output::clip(message, MAX_DB_MESSAGE);
                (
                    Status::SqlError,
                    json!({"message": format!("the database refused the query: {message}"), "db_message": message}),
                )
            }
            SqlError::Value { message } => (
                Status::SqlError,
                json!({"message": format!("a value of the query's result cannot be read: {message}")}),
            ),
            SqlError::Timeout { seconds } => (
                Status::SqlTimeout,
                json!({"message": format!("{e}; add a WHERE clause or LIMIT, or avoid cross joins"), "limit_s": seconds}),
            ),
            SqlError::RowLimit { limit } => (
                Status::RowLimit,
                json!({"message": format!("{e}; add a WHERE clause or LIMIT {limit}, or aggregate in SQL"), "limit": limit}),
            ),
            SqlError::ByteLimit { limit } => (
                Status::RowLimit,
                json!({"message": format!("{e} (the policy's max_fetch_bytes); select fewer or shorter columns \
                    (substr/length of big text or blobs), fewer rows, or aggregate in SQL"), "limit_bytes": limit}),
            ),
            SqlError::Connect { .. }
            | SqlError::Encode(_)
            | SqlError::Unavailable { .. }
            | SqlError::Role(_) => {
                tracing::error!("sql stage failed: {e}");
                (
                    Status::InternalError,
                    json!({"message": "sluice could not read from the database; retry later"}),
                )
            }
        };
        self.set_error(status, detail);
    }

    /// Apply the policy's `[output]` bounds to what the child returned and
    /// note for the audit what leaves.
    pub(super) fn shape_output(&mut self, policy: &Policy) {
        let o = &policy.output;
        let stdout_returned = o.stdout == crate::policy::StdoutMode::Return;
        // The labels move out for the checks and the summary, and back in
        // only if they are returned.
        let labels = self.predictions.take();
        let distinct = self.label_counts.as_ref().map_or(0, |c| c.len());
        let returned = match &labels {
            Some(l) if self.status == Status::Success => {
                match crate::output::check(o, &policy.name, l, distinct) {
                    Err(v) => {
                        self.set_error(Status::InvalidOutput, v.detail());
                        "nothing"
                    }
                    Ok(()) if o.counts_only => {
                        self.label_counts =
                            self.label_counts.take().map(|c| crate::output::suppress(c, o.min_group_size));
                        self.scores = None;
                        // The exact count would tell a one-row predicate's
                        // answer and the size of the groups left out.
                        self.row_count = None;
                        "counts"
                    }
                    Ok(()) => {
                        if !o.scores {
                            self.scores = None;
                        }
                        "labels"
                    }
                }
            }
            _ => "error",
        };
        self.output = Some(crate::output::summary(
            labels.as_deref(),
            distinct,
            returned,
            &self.stdout,
            &self.stderr,
            stdout_returned,
        ));
        if returned == "labels" {
            self.predictions = labels;
        }
        if !stdout_returned {
            self.stdout.clear();
            self.stderr.clear();
            self.stdout_truncated = false;
            self.stderr_truncated = false;
        }
    }

    pub(super) fn set_outcome(&mut self, o: Outcome) {
        self.stdout = o.stdout;
        self.stderr = o.stderr;
        self.stdout_truncated = o.stdout_truncated;
        self.stderr_truncated = o.stderr_truncated;
        self.resources = Resources { cpu_ms: Some(o.cpu_ms), peak_memory_kb: Some(o.peak_memory_kb) };
        self.exit_signal = o.exit_signal;
        if o.status == Status::Success {
            let preds = o.predictions.unwrap_or_default();
            self.label_counts = Some(crate::output::counts(&preds));
            self.predictions = Some(preds);
            self.scores = o.scores;
            self.status = Status::Success;
            self.error = None;
        } else {
            self.set_error(o.status, o.error.unwrap_or_else(|| json!({"message": "no detail"})));
        }
    }
}
