//! The closed set of statuses (DESIGN §3): the verdicts a response carries,
//! and the states only an audit record has (a request refused before it
//! ran, one still running, one cut off by a stop). The API, the audit
//! store, the review page and the metrics all use this one type.

use serde::{Deserialize, Serialize};

macro_rules! statuses {
    ($($variant:ident = $name:literal, $verdict:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Status {
            $($variant,)*
        }

        impl Status {
            /// Every status, verdicts first, in the order DESIGN §3 lists them.
            pub const ALL: &[Status] = &[$(Status::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Status::$variant => $name,)*
                }
            }

            pub fn parse(s: &str) -> Option<Status> {
                match s {
                    $($name => Some(Status::$variant),)*
                    _ => None,
                }
            }

            /// A verdict of a request that was executed (a response's
            /// `status`), as opposed to a refusal or an audit-only state.
            pub fn is_verdict(self) -> bool {
                match self {
                    $(Status::$variant => $verdict,)*
                }
            }
        }
    };
}

statuses! {
    Success = "success", true;
    SqlRejected = "sql_rejected", true;
    SqlError = "sql_error", true;
    SqlTimeout = "sql_timeout", true;
    RowLimit = "row_limit", true;
    SyntaxError = "syntax_error", true;
    MissingEntrypoint = "missing_entrypoint", true;
    RuntimeError = "runtime_error", true;
    InvalidOutput = "invalid_output", true;
    Timeout = "timeout", true;
    MemoryLimit = "memory_limit", true;
    OutputLimit = "output_limit", true;
    SecurityViolation = "security_violation", true;
    InternalError = "internal_error", true;
    // Refused before it ran (the HTTP answer was not 200).
    BadRequest = "bad_request", false;
    Forbidden = "forbidden", false;
    QueueFull = "queue_full", false;
    NotReady = "not_ready", false;
    DatabaseUnavailable = "database_unavailable", false;
    // Audit-only states.
    Running = "running", false;
    Interrupted = "interrupted", false;
}

impl Status {
    /// Statuses the sandboxed harness may report about itself. Anything
    /// else coming from the child is treated as a protocol violation.
    pub fn from_child(s: &str) -> Option<Status> {
        use Status::*;
        Status::parse(s).filter(|st| {
            matches!(
                st,
                Success
                    | SyntaxError
                    | MissingEntrypoint
                    | RuntimeError
                    | InvalidOutput
                    | MemoryLimit
                    | OutputLimit
                    | SecurityViolation
                    | InternalError
            )
        })
    }
}

/// The state of a record before it is completed.
impl Default for Status {
    fn default() -> Self {
        Status::Running
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn names_round_trip_and_serde_agrees() {
        assert_eq!(Status::ALL.len(), 21);
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert_eq!(Status::ALL.iter().filter(|s| s.is_verdict()).count(), 14);
        assert_eq!(Status::from_child("row_limit"), None);
        assert_eq!(Status::from_child("runtime_error"), Some(Status::RuntimeError));
    }
}
