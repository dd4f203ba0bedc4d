//! `/mcp`: the MCP server over streamable HTTP (rmcp), behind a cap on the
//! sessions one key may hold open.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::error::ApiError;
use crate::app::{App, Caller};

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

/// The `/mcp` route: one service for GET, POST and DELETE.
pub fn mcp_router(app: Arc<App>) -> Router<Arc<App>> {
    let sessions = Arc::new(McpSessions {
        manager: Arc::new(LocalSessionManager::default()),
        by_key: Default::default(),
    });
    let mcp = rmcp::transport::streamable_http_server::StreamableHttpService::new(
        move || Ok(crate::mcp::SluiceTools::new(app.clone(), None)),
        sessions.manager.clone(),
        // Bearer keys guard /mcp, so any Host may reach it (the loopback-only
        // default protects unauthenticated local servers from DNS rebinding).
        rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default()
            .disable_allowed_hosts(),
    );
    Router::new().route_service("/mcp", mcp).layer(middleware::from_fn_with_state(sessions, mcp_gate))
}

/// A new MCP session (a POST without `Mcp-Session-Id`) only while the key
/// holds fewer than `MAX_MCP_SESSIONS_PER_KEY` live ones.
async fn mcp_gate(State(s): State<Arc<McpSessions>>, req: Request, next: Next) -> Response {
    let opens = req.method() == axum::http::Method::POST && !req.headers().contains_key("mcp-session-id");
    let Some(key) = req.extensions().get::<Caller>().map(|c| c.principal.key_id.clone()) else {
        return next.run(req).await;
    };
    if req.method() == axum::http::Method::DELETE {
        // A closed session is answered 204, which MCP clients (the official
        // SDK among them) take as success; rmcp answers 202.
        let mut resp = next.run(req).await;
        if resp.status() == axum::http::StatusCode::ACCEPTED {
            *resp.status_mut() = axum::http::StatusCode::NO_CONTENT;
            *resp.body_mut() = axum::body::Body::empty();
        }
        return resp;
    }
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
