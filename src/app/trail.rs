//! The audit record of one request: what is written before any work
//! (`opening`), and how it is completed (`closing`, `rejected`).

use serde_json::{Value, json};
use uuid::Uuid;

use super::authz::Caller;
use super::types::{AppError, ExecuteRequest, ExecuteResponse};
use crate::audit::{Finish, NewExecution};
use crate::policy::Policies;
use crate::status::Status;

/// The row written before any work: long texts as excerpts, so a request
/// refused at once costs the store a few KiB.
pub(super) fn opening(id: Uuid, caller: &Caller, req: &ExecuteRequest, policies: &Policies) -> NewExecution {
    let name = req.policy.as_deref().unwrap_or("default");
    NewExecution {
        execution_id: id,
        principal: caller.principal.label(),
        client_addr: caller.client_addr.clone(),
        policy: Some(crate::output::clip(name, 256)),
        environment: policies.get(name).map(|p| p.environment.clone()),
        sql_query: Some(req.sql_query.clone()),
        params: Some(crate::audit::params_excerpt(&req.params)),
        classifier_code: Some(req.classifier_code.clone()),
    }
}

/// How the row is completed, whatever the request's ending.
pub(super) fn closing(result: &Result<ExecuteResponse, AppError>, full_text: (String, String)) -> Finish {
    match result {
        Ok(r) => Finish {
            output: r.output.clone(),
            // Long texts were kept as excerpts; a request that reached the
            // database keeps them whole.
            full_text: (r.timings_ms.sql.is_some() && r.status != Status::SqlRejected).then_some(full_text),
            status: r.status,
            error: r.error.clone(),
            row_count: r.row_count.map(|n| n as i64),
            timings_ms: serde_json::to_value(&r.timings_ms).ok(),
            resources: serde_json::to_value(&r.resources).ok(),
            exit_signal: r.exit_signal.map(i64::from),
            blocked_syscall: r
                .error
                .as_ref()
                .and_then(|e| e.get("syscall"))
                .and_then(Value::as_str)
                .map(String::from),
        },
        Err(e) => refused(e.status(), &e.to_string()),
    }
}

/// The whole record of a request refused before it ran (while stopping).
pub(super) fn refused_request(
    id: Uuid,
    caller: &Caller,
    req: &ExecuteRequest,
    policies: &Policies,
    why: &AppError,
) -> (NewExecution, Finish) {
    (opening(id, caller, req, policies), refused(why.status(), &why.to_string()))
}

/// The row of a request whose body could not even be parsed (HTTP 400).
pub(super) fn rejected(id: Uuid, caller: &Caller, message: &str) -> (NewExecution, Finish) {
    let start = NewExecution {
        execution_id: id,
        principal: caller.principal.label(),
        client_addr: caller.client_addr.clone(),
        ..Default::default()
    };
    (start, refused(Status::BadRequest, message))
}

fn refused(status: Status, message: &str) -> Finish {
    Finish {
        status,
        error: Some(json!({"category": status.as_str(), "message": message})),
        ..Default::default()
    }
}
