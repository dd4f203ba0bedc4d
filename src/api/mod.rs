//! HTTP routes (axum). Handlers parse and answer; the work is in
//! `service::App`.

pub mod error;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::service::{App, ExecuteRequest};
use crate::verdict::Status;
pub use error::ApiError;

/// Largest request body accepted (code + SQL + params).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/execute-classifier", post(execute))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

async fn execute(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
        _ => ApiError::BadRequest { field: None, message: format!("could not read the body: {e}") },
    })?;
    let req: ExecuteRequest = parse_json(&body)?;
    let resp = app.execute(req).await?;
    let code =
        if resp.status == Status::InternalError { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    Ok((code, axum::Json(resp)).into_response())
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

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"ok": true}))
}

async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let (ready, body) = app.readiness().await;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound { path: uri.path().to_string() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
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
