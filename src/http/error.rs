//! The one error type at the HTTP edge. Every non-200 body is JSON:
//! `{"error": {"code", "message", "field"?}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppError;
use crate::app::authz::Denied;

#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        field: Option<String>,
        message: String,
    },
    PayloadTooLarge {
        limit: usize,
    },
    NotFound {
        path: String,
    },
    MethodNotAllowed,
    QueueFull {
        message: String,
    },
    TooManySessions {
        message: String,
    },
    NotReady {
        message: String,
    },
    /// 503 for a reason of its own (`stopping`, `interrupted`).
    Unavailable {
        code: &'static str,
        message: String,
    },
    Unauthorized {
        message: String,
    },
    Forbidden {
        message: String,
    },
    NotFoundRecord {
        message: String,
    },
    Internal {
        message: String,
    },
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::BadRequest { field, message } => ApiError::BadRequest { field: Some(field), message },
            e @ AppError::QueueFull { .. } => ApiError::QueueFull { message: e.to_string() },
            e @ AppError::NotReady => ApiError::NotReady { message: e.to_string() },
            e @ AppError::Stopping => ApiError::Unavailable { code: "stopping", message: e.to_string() },
            e @ AppError::Interrupted { .. } => {
                ApiError::Unavailable { code: "interrupted", message: e.to_string() }
            }
            AppError::Internal(message) => ApiError::Internal { message },
            AppError::Forbidden(message) => ApiError::Forbidden { message },
            e @ AppError::AuditUnavailable(_) => ApiError::NotReady { message: e.to_string() },
            e @ AppError::DatabaseUnavailable(_) => ApiError::NotReady { message: e.to_string() },
            AppError::NotFound(message) => ApiError::NotFoundRecord { message },
            AppError::Audit(e) => e.into(),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError::Forbidden { message: d.0 }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match self {
            ApiError::BadRequest { field, message } => {
                let m = match &field {
                    Some(f) => format!("{f}: {message}"),
                    None => message,
                };
                (StatusCode::BAD_REQUEST, "bad_request", m, field)
            }
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body is over the limit of {limit} bytes; send less code or fewer params"
                ),
                None,
            ),
            ApiError::NotFound { path } => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no endpoint at {path}; POST /execute-classifier runs a classifier"),
                None,
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method".into(),
                None,
            ),
            ApiError::QueueFull { message } => (StatusCode::TOO_MANY_REQUESTS, "queue_full", message, None),
            ApiError::TooManySessions { message } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions", message, None)
            }
            ApiError::NotReady { message } => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", message, None),
            ApiError::Unavailable { code, message } => (StatusCode::SERVICE_UNAVAILABLE, code, message, None),
            ApiError::Unauthorized { message } => (StatusCode::UNAUTHORIZED, "unauthorized", message, None),
            ApiError::Forbidden { message } => (StatusCode::FORBIDDEN, "forbidden", message, None),
            ApiError::NotFoundRecord { message } => (StatusCode::NOT_FOUND, "not_found", message, None),
            ApiError::Internal { message } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message, None)
            }
        };
        let mut body = json!({"error": {"code": code, "message": message}});
        if let Some(f) = field {
            body["error"]["field"] = json!(f);
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        match e {
            crate::audit::AuditError::NotFound(message) => ApiError::NotFoundRecord { message },
            crate::audit::AuditError::Filter { field, message } => {
                ApiError::BadRequest { field: Some(field.into()), message }
            }
            other => {
                tracing::error!("audit store: {other}");
                ApiError::Internal { message: "the audit store failed; see the server log".into() }
            }
        }
    }
}
