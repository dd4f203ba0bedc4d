//! HTTP routes (axum). Handlers parse and answer; the work is in
//! `service::App`.

pub mod error;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::audit::keys::Role;
use crate::service::{App, Caller, ExecuteRequest};
use crate::verdict::Status;
pub use error::ApiError;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

/// Largest request body accepted (code + SQL + params).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// MCP sessions one key may hold open at once (each costs memory until it
/// is closed or idles out).
pub const MAX_MCP_SESSIONS_PER_KEY: usize = 16;

/// The MCP sessions each key opened (and is opening), to cap them per key.
struct McpSessions {
    manager: Arc<LocalSessionManager>,
    by_key: tokio::sync::Mutex<std::collections::HashMap<String, KeySessions>>,
}

#[derive(Default)]
struct KeySessions {
    ids: Vec<rmcp::transport::common::server_side_http::SessionId>,
    /// `initialize` requests in flight: they hold a place, not the lock.
    opening: usize,
}

pub fn router(app: Arc<App>) -> Router {
    let mcp_app = app.clone();
    let sessions = Arc::new(McpSessions {
        manager: Arc::new(LocalSessionManager::default()),
        by_key: Default::default(),
    });
    let mcp = rmcp::transport::streamable_http_server::StreamableHttpService::new(
        move || Ok(crate::tools::SluiceTools::new(mcp_app.clone(), None)),
        sessions.manager.clone(),
        // Bearer keys guard /mcp, so any Host may reach it (the loopback-only
        // default protects unauthenticated local servers from DNS rebinding).
        rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default()
            .disable_allowed_hosts(),
    );
    // Everything but the health checks needs a key.
    let protected = Router::new()
        .route("/execute-classifier", post(execute))
        .route("/tools", get(tools))
        .route("/tools/call", post(tools_call))
        .merge(
            Router::new()
                .route_service("/mcp", mcp)
                .layer(middleware::from_fn_with_state(sessions, mcp_gate)),
        )
        .route("/schema", get(schema))
        .route("/metrics", get(metrics))
        .route("/audit", get(audit_list))
        .route("/audit/verify", get(audit_verify))
        .route("/audit/{id}", get(audit_get))
        .merge(crate::ui::routes())
        .route_layer(middleware::from_fn_with_state(app.clone(), authenticate));
    Router::new()
        .merge(protected)
        .merge(crate::ui::public_routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// A new MCP session (a POST without `Mcp-Session-Id`) only while the key
/// holds fewer than `MAX_MCP_SESSIONS_PER_KEY` live ones.
async fn mcp_gate(State(s): State<Arc<McpSessions>>, req: Request, next: Next) -> Response {
    let opens = req.method() == axum::http::Method::POST && !req.headers().contains_key("mcp-session-id");
    let Some(key) = req.extensions().get::<Caller>().map(|c| c.principal.key_id.clone()) else {
        return next.run(req).await;
    };
    if !opens {
        return next.run(req).await;
    }
    {
        let mut by_key = s.by_key.lock().await;
        let mine = by_key.entry(key.clone()).or_default();
        let mut live = Vec::new();
        for id in std::mem::take(&mut mine.ids) {
            if s.manager.has_session(&id).await.unwrap_or(false) {
                live.push(id);
            }
        }
        mine.ids = live;
        if mine.ids.len() + mine.opening >= MAX_MCP_SESSIONS_PER_KEY {
            return ApiError::TooManySessions {
                message: format!(
                    "this key has {MAX_MCP_SESSIONS_PER_KEY} MCP sessions open, the most one key may hold; \
                     reuse one (send its Mcp-Session-Id), close one (DELETE /mcp with its Mcp-Session-Id), \
                     or wait for an idle one to expire"
                ),
            }
            .into_response();
        }
        mine.opening += 1;
    }
    // The place is given back however the request ends (even dropped).
    let mut opening = Opening(s.clone(), key.clone(), true);
    let resp = next.run(req).await;
    let mut by_key = s.by_key.lock().await;
    let mine = by_key.entry(key).or_default();
    mine.opening = mine.opening.saturating_sub(1);
    opening.2 = false;
    if let Some(id) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
        mine.ids.push(id.into());
    }
    resp
}

/// A key's place for one `initialize` in flight, given back if the request
/// is dropped before it answers.
struct Opening(Arc<McpSessions>, String, bool);

impl Drop for Opening {
    fn drop(&mut self) {
        if !self.2 {
            return;
        }
        let (s, key) = (self.0.clone(), std::mem::take(&mut self.1));
        tokio::spawn(async move {
            let mut by_key = s.by_key.lock().await;
            let mine = by_key.entry(key).or_default();
            mine.opening = mine.opening.saturating_sub(1);
        });
    }
}

/// The key of an `Authorization: Bearer <key>` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_string())
}

/// The bearer key (or, for the review pages, the session cookie) → the
/// caller, or 401.
async fn authenticate(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = bearer(req.headers()).or_else(|| crate::ui::session_key(req.headers()));
    let Some(key) = presented else {
        if req.uri().path().starts_with("/ui/") {
            return crate::ui::login_redirect(req.uri());
        }
        return ApiError::Unauthorized {
            message:
                "missing API key: send `Authorization: Bearer <key>` (create one with `sluice keys create`)"
                    .into(),
        }
        .into_response();
    };
    match app.audit.authenticate(&key).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(Caller { principal, client_addr: Some(addr.to_string()) });
            next.run(req).await
        }
        Ok(None) => ApiError::Unauthorized { message: "unknown or revoked API key".into() }.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// 403 unless the caller's key has `role` (admin has every role).
pub fn require(caller: &Caller, role: Role) -> Result<(), ApiError> {
    crate::service::require_role(caller, role).map_err(|message| ApiError::Forbidden { message })
}

async fn execute(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Role::Execute)?;
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
            app.record_rejected(&caller, &msg).await;
            return Err(e);
        }
    };
    let resp = app.execute(&caller, req).await?;
    let code =
        if resp.status == Status::InternalError { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    Ok((code, axum::Json(resp)).into_response())
}

/// Prometheus metrics (roles audit or admin).
async fn metrics(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require(&caller, Role::Audit)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics_text().await).into_response())
}

#[derive(serde::Deserialize)]
struct ToolsQuery {
    format: Option<String>,
}

/// Function-calling definitions (`?format=openai|anthropic`).
async fn tools(Query(q): Query<ToolsQuery>) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "openai".into());
    crate::tools::definitions(&format).map(|v| axum::Json(v).into_response()).ok_or_else(|| {
        ApiError::BadRequest {
            field: Some("format".into()),
            message: format!("`{format}` is not a format; use openai or anthropic"),
        }
    })
}

/// Dispatch one function call as a model emits it: an OpenAI `tool_call`
/// (`{"type": "function", "function": {"name", "arguments": "<json>"}}`),
/// an Anthropic `tool_use` (`{"name", "input"}`), or `{"name", "arguments"}`.
async fn tools_call(
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
        Some(serde_json::Value::String(s)) => serde_json::from_str(s).map_err(|e| ApiError::BadRequest {
            field: Some("arguments".into()),
            message: format!("`arguments` is not JSON: {e}"),
        })?,
        Some(other) => other.clone(),
        None => json!({}),
    };
    let result = crate::tools::dispatch(&app, &caller, name, args).await;
    Ok(axum::Json(json!({
        "is_error": result.is_error.unwrap_or(false),
        "content": result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n"),
        "structured_content": result.structured_content,
    }))
    .into_response())
}

#[derive(serde::Deserialize)]
struct SchemaQuery {
    policy: Option<String>,
}

async fn schema(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SchemaQuery>,
) -> Result<Response, ApiError> {
    require(&caller, Role::Execute)?;
    let policy = q.policy.unwrap_or_else(|| "default".into());
    if !caller.principal.may_use_policy(&policy) {
        return Err(ApiError::Forbidden { message: format!("this key may not use policy `{policy}`") });
    }
    Ok(axum::Json(app.schema(&caller, &policy).await?).into_response())
}

async fn audit_list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    filter: Result<Query<crate::audit::Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, Role::Audit)?;
    let Query(mut filter) =
        filter.map_err(|e| ApiError::BadRequest { field: None, message: e.body_text() })?;
    filter.scope = crate::audit::Scope::of(&caller.principal);
    Ok(axum::Json(app.audit.list(&filter).await?).into_response())
}

async fn audit_get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&caller, Role::Audit)?;
    let scope = crate::audit::Scope::of(&caller.principal);
    Ok(axum::Json(app.audit.get_scoped(&id, scope.as_ref()).await?).into_response())
}

async fn audit_verify(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require(&caller, Role::Audit)?;
    Ok(axum::Json(crate::audit::chain::verify(&app.audit).await?).into_response())
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

/// Anyone may ask whether sluice is ready; what it runs on (the database,
/// its guards, the sandbox layers, zygote pids) is shown only to a key with
/// the audit role.
async fn readyz(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let (ready, body) = app.readiness().await;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let detailed = match bearer(&headers) {
        Some(k) => matches!(app.audit.authenticate(&k).await, Ok(Some(p)) if p.has(Role::Audit)),
        None => false,
    };
    if detailed {
        return (code, axum::Json(body));
    }
    let alive = body["environments"]
        .as_object()
        .map(|envs| envs.iter().map(|(k, v)| (k.clone(), json!({"alive": v["alive"]}))).collect())
        .unwrap_or_default();
    let brief = json!({
        "ready": body["ready"],
        "warm": body["warm"],
        "database": {"reachable": body["database"]["reachable"]},
        "environments": serde_json::Value::Object(alive),
        "detail": "send `Authorization: Bearer <key>` of a key with the audit role for the database, its guards and the sandbox layers",
    });
    (code, axum::Json(brief))
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
