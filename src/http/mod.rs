//! The HTTP door: the route table, the router built from it, and the
//! accept loop. Handlers parse and answer; what a caller may do is the
//! permission table's (`app::authz`), the work is `app::App`'s.
//!
//! - `routes.rs` the API handlers      - `auth.rs`  bearer keys → `Caller`
//! - `ui.rs`     the review pages      - `error.rs` the JSON error edge
//! - `mcp_gate.rs` MCP sessions per key - `server.rs` the accept loop

mod auth;
pub mod error;
mod mcp_gate;
mod routes;
pub mod server;
mod ui;
mod ui_audit;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{MethodRouter, get, post};

use crate::app::App;
use crate::app::authz::Action;
pub use error::ApiError;
pub use mcp_gate::MAX_MCP_SESSIONS_PER_KEY;
pub use server::{BODY_TIMEOUT, DRAIN_TIMEOUT, HEADER_TIMEOUT, MAX_CONNECTIONS, serve, serve_until};

/// Largest request body accepted (code + SQL + params).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Who may reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed.
    Public,
    /// A key; what it may do is decided per operation (each MCP tool, each
    /// `/tools/call` call) by the permission table.
    Key,
    /// A key the permission table allows this action.
    Action(Action),
}

/// One route: every door of the HTTP API is a row here, and the router is
/// built from this table (a route without a row cannot exist).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route { method, path, access }
}

pub const ROUTES: &[Route] = &[
    route("POST", "/execute-classifier", Access::Action(Action::RunCode)),
    route("GET", "/schema", Access::Action(Action::ReadSchema)),
    route("GET", "/tools", Access::Action(Action::ListTools)),
    route("POST", "/tools/call", Access::Key),
    route("POST", "/mcp", Access::Key),
    route("GET", "/mcp", Access::Key),
    route("DELETE", "/mcp", Access::Key),
    route("GET", "/audit", Access::Action(Action::ListRecords)),
    route("GET", "/audit/verify", Access::Action(Action::VerifyChain)),
    route("GET", "/audit/{id}", Access::Action(Action::ReadRecord)),
    route("GET", "/metrics", Access::Action(Action::ReadMetrics)),
    route("GET", "/ui/audit", Access::Action(Action::ListRecords)),
    route("GET", "/ui/audit/{id}", Access::Action(Action::ReadRecord)),
    route("GET", "/ui/audit.jsonl", Access::Action(Action::ListRecords)),
    route("POST", "/ui/logout", Access::Public),
    route("GET", "/ui/login", Access::Public),
    route("POST", "/ui/login", Access::Public),
    route("GET", "/healthz", Access::Public),
    route("GET", "/readyz", Access::Public),
];

/// The handler of a row of `ROUTES`.
fn handler(r: &Route) -> MethodRouter<Arc<App>> {
    match (r.method, r.path) {
        ("POST", "/execute-classifier") => post(routes::execute),
        ("GET", "/schema") => get(routes::schema),
        ("GET", "/tools") => get(routes::tools),
        ("POST", "/tools/call") => post(routes::tools_call),
        ("GET", "/audit") => get(routes::audit_list),
        ("GET", "/audit/verify") => get(routes::audit_verify),
        ("GET", "/audit/{id}") => get(routes::audit_get),
        ("GET", "/metrics") => get(routes::metrics),
        ("GET", "/ui/audit") => get(ui_audit::list),
        ("GET", "/ui/audit/{id}") => get(ui_audit::detail),
        ("GET", "/ui/audit.jsonl") => get(ui_audit::export),
        ("POST", "/ui/logout") => post(ui::logout),
        ("GET", "/ui/login") => get(ui::login_form),
        ("POST", "/ui/login") => post(ui::login),
        ("GET", "/healthz") => get(routes::healthz),
        ("GET", "/readyz") => get(routes::readyz),
        other => panic!("route {other:?} has a row in ROUTES but no handler"),
    }
}

pub fn router(app: Arc<App>) -> Router {
    let mut public = Router::new();
    let mut keyed = Router::new();
    for r in ROUTES {
        if r.path == "/mcp" {
            continue; // one service for every method, below
        }
        let mut h = handler(r);
        if r.path.starts_with("/ui/") {
            h = h.layer(middleware::map_response(ui::page_headers));
        }
        // Two rows of one path (GET and POST /ui/login) merge into one.
        if r.access == Access::Public {
            public = public.route(r.path, h);
        } else {
            keyed = keyed.route(r.path, h);
        }
    }
    keyed = keyed.merge(mcp_gate::mcp_router(app.clone()));
    let keyed = keyed.route_layer(middleware::from_fn_with_state(app.clone(), auth::authenticate));
    Router::new()
        .merge(keyed)
        .merge(public)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}
