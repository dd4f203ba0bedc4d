//! The closed set of ways a request can end (DESIGN §3). Every response and
//! every audit record carries exactly one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    SqlRejected,
    SqlError,
    SqlTimeout,
    RowLimit,
    SyntaxError,
    MissingEntrypoint,
    RuntimeError,
    InvalidOutput,
    Timeout,
    MemoryLimit,
    OutputLimit,
    SecurityViolation,
    InternalError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::SqlRejected => "sql_rejected",
            Status::SqlError => "sql_error",
            Status::SqlTimeout => "sql_timeout",
            Status::RowLimit => "row_limit",
            Status::SyntaxError => "syntax_error",
            Status::MissingEntrypoint => "missing_entrypoint",
            Status::RuntimeError => "runtime_error",
            Status::InvalidOutput => "invalid_output",
            Status::Timeout => "timeout",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::SecurityViolation => "security_violation",
            Status::InternalError => "internal_error",
        }
    }

    /// Statuses the sandboxed harness may report about itself. Anything
    /// else coming from the child is treated as a protocol violation.
    pub fn from_child(s: &str) -> Option<Status> {
        Some(match s {
            "success" => Status::Success,
            "syntax_error" => Status::SyntaxError,
            "missing_entrypoint" => Status::MissingEntrypoint,
            "runtime_error" => Status::RuntimeError,
            "invalid_output" => Status::InvalidOutput,
            "memory_limit" => Status::MemoryLimit,
            "output_limit" => Status::OutputLimit,
            "security_violation" => Status::SecurityViolation,
            "internal_error" => Status::InternalError,
            _ => return None,
        })
    }
}
