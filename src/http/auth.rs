//! Authentication: the bearer key (or, for the review pages, the session
//! cookie) → the `Caller`, or 401. What the caller may do is decided by
//! the permission table where each handler asks for its grant.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::error::ApiError;
use crate::app::{App, Caller};

/// The review pages' session cookie: the key, HttpOnly, SameSite=Strict.
pub const SESSION_COOKIE: &str = "sluice_key";

/// The key of an `Authorization: Bearer <key>` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_string())
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        c.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(String::from))
    })
}

/// The caller a request's key names, if any (`Ok(None)`: no or an unknown key).
pub async fn caller_of(app: &App, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let Some(key) = bearer(headers) else { return Ok(None) };
    Ok(app.authenticate(&key).await?.map(|principal| Caller { principal, client_addr: None }))
}

pub async fn authenticate(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = bearer(req.headers()).or_else(|| cookie_value(req.headers(), SESSION_COOKIE));
    let Some(key) = presented else {
        if req.uri().path().starts_with("/ui/") {
            return login_redirect(req.uri());
        }
        return ApiError::Unauthorized {
            message:
                "missing API key: send `Authorization: Bearer <key>` (create one with `sluice keys create`)"
                    .into(),
        }
        .into_response();
    };
    match app.authenticate(&key).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(Caller { principal, client_addr: Some(addr.to_string()) });
            next.run(req).await
        }
        Ok(None) => ApiError::Unauthorized { message: "unknown or revoked API key".into() }.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// To the sign-in page, and back to `uri` afterwards.
pub fn login_redirect(uri: &Uri) -> Response {
    let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/audit");
    Redirect::to(&format!("/ui/login?next={}", urlencode(next))).into_response()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
