//! The API's handlers: each asks the permission table for its grant, parses,
//! calls the `App` and answers.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::BODY_LIMIT;
use super::error::ApiError;
use crate::app::{App, Caller, ExecuteRequest, act, grant};
use crate::status::Status;

pub async fn execute(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let g = grant::<act::RunCode>(&caller)?;
    let req = body
        .map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
            _ => ApiError::BadRequest { field: None, message: format!("could not read the body: {e}") },
        })
        .and_then(|b| parse_json::<ExecuteRequest>(&b));
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            // Audited too: a malformed request is still a request.
            let msg = match &e {
                ApiError::BadRequest { message, .. } => message.clone(),
                ApiError::PayloadTooLarge { limit } => format!("body over {limit} bytes"),
                _ => "unreadable request".into(),
            };
            app.record_rejected(&g, &msg).await;
            return Err(e);
        }
    };
    let resp = app.execute(&g, req).await?;
    let code =
        if resp.status == Status::InternalError { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    Ok((code, axum::Json(resp)).into_response())
}

#[derive(serde::Deserialize)]
pub struct SchemaQuery {
    policy: Option<String>,
}

pub async fn schema(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SchemaQuery>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ReadSchema>(&caller)?;
    Ok(axum::Json(app.schema(&g, q.policy.as_deref()).await?).into_response())
}

#[derive(serde::Deserialize)]
pub struct ToolsQuery {
    format: Option<String>,
}

/// Function-calling definitions (`?format=openai|anthropic`).
pub async fn tools(
    Extension(caller): Extension<Caller>,
    Query(q): Query<ToolsQuery>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ListTools>(&caller)?;
    let format = q.format.unwrap_or_else(|| "openai".into());
    crate::mcp::definitions(&g, &format).map(|v| axum::Json(v).into_response()).ok_or_else(|| {
        ApiError::BadRequest {
            field: Some("format".into()),
            message: format!("`{format}` is not a format; use openai or anthropic"),
        }
    })
}

/// Dispatch one function call as a model emits it: an OpenAI `tool_call`
/// (`{"type": "function", "function": {"name", "arguments": "<json>"}}`),
/// an Anthropic `tool_use` (`{"name", "input"}`), or `{"name", "arguments"}`.
/// Each tool asks the permission table for its own grant.
pub async fn tools_call(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = parse_json(&body)?;
    let call = v.get("function").unwrap_or(&v);
    let name = call["name"].as_str().ok_or_else(|| ApiError::BadRequest {
        field: Some("name".into()),
        message: "the tool call has no `name`".into(),
    })?;
    let args = match call.get("arguments").or_else(|| call.get("input")) {
        Some(serde_json::Value::String(s)) => serde_json::from_str(s).map_err(|e| {
            // The model's own output was malformed: a tool result it can
            // read and retry, not an HTTP error that ends an agent loop.
            format!(
                "the tool call's `arguments` is not valid JSON ({e}); send the arguments object as one JSON \
                 string, e.g. {{\"sql_query\": \"SELECT …\", \"classifier_code\": \"def classify(df): …\"}}"
            )
        }),
        Some(other) => Ok(other.clone()),
        None => Ok(json!({})),
    };
    let result = match args {
        Ok(args) => crate::mcp::dispatch(&app, &caller, name, args).await,
        Err(message) => crate::mcp::error_result(message),
    };
    Ok(axum::Json(json!({
        "is_error": result.is_error.unwrap_or(false),
        "content": result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n"),
        "structured_content": result.structured_content,
    }))
    .into_response())
}

pub async fn audit_list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    filter: Result<Query<crate::audit::Filter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ListRecords>(&caller)?;
    let Query(filter) = filter.map_err(|e| ApiError::BadRequest { field: None, message: e.body_text() })?;
    Ok(axum::Json(app.records(&g, filter).await?).into_response())
}

pub async fn audit_get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ReadRecord>(&caller)?;
    Ok(axum::Json(app.record(&g, &id).await?).into_response())
}

pub async fn audit_verify(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let g = grant::<act::VerifyChain>(&caller)?;
    Ok(axum::Json(app.verify_chain(&g).await?).into_response())
}

/// Prometheus metrics.
pub async fn metrics(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ReadMetrics>(&caller)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics_text(&g).await).into_response())
}

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"ok": true}))
}

/// Anyone may ask whether sluice is ready; what it runs on is shown only
/// with a key the table allows the server's details.
pub async fn readyz(State(app): State<Arc<App>>, headers: HeaderMap) -> impl IntoResponse {
    let details = match super::auth::caller_of(&app, &headers).await {
        Ok(Some(c)) => grant::<act::ReadServerDetails>(&c).ok(),
        _ => None,
    };
    let (ready, body) = app.readiness(details.as_ref()).await;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body))
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound { path: uri.path().to_string() }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// serde's messages name the field (`unknown field `x`, expected one of …`,
/// `missing field `sql_query``, `invalid type … at line 1 column 20`).
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let field = field_of(&msg).or((path != ".").then_some(path));
        let hint = "send a JSON object with `sql_query` and `classifier_code` (optional: params, entrypoint, timeout, max_memory, policy)";
        ApiError::BadRequest { field, message: format!("invalid request body: {msg}; {hint}") }
    })
}

fn field_of(msg: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().map(String::from);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn field_names_come_out_of_serde_messages() {
        assert_eq!(
            super::field_of("unknown field `foo`, expected one of `sql_query`").as_deref(),
            Some("foo")
        );
        assert_eq!(
            super::field_of("missing field `classifier_code` at line 1").as_deref(),
            Some("classifier_code")
        );
        assert_eq!(super::field_of("expected value at line 1 column 1"), None);
    }
}
