//! The audit review page for people: server-rendered HTML (no JavaScript),
//! filters, a table of executions, a detail view. Protected by the same
//! keys as the API (role `audit`): a browser signs in once on /ui/login,
//! which keeps the key in an HttpOnly, SameSite=Strict cookie.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{SESSION_COOKIE as COOKIE, cookie_value, urlencode};
use super::error::ApiError;
use crate::app::{App, Caller, act, grant};
use crate::audit::{Filter, Record};
use crate::status::Status;

/// Double-submit token of the sign-in form: a cookie only this site can set,
/// repeated in the form, so no other site can sign a browser in.
const CSRF_COOKIE: &str = "sluice_login";

/// No framing, no scripts, no other origins, no content sniffing.
pub async fn page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

/// A local page of the review UI to go to after sign-in: a path under
/// `/ui/` of plain URL characters only (no scheme, no host, no CR/LF).
fn safe_next(next: Option<String>) -> String {
    next.filter(|n| {
        n.starts_with("/ui/")
            && !n.starts_with("//")
            && n.len() <= 2048
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    })
    .unwrap_or_else(|| "/ui/audit".into())
}

/// `; Secure` when the browser reached us over HTTPS (through a proxy
/// that says so): the key cookie must never travel in clear text then.
fn secure_flag(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · sluice</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }}
h1 {{ font-size: 1.3rem; }} a {{ color: #0b5cad; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #d8dee4; vertical-align: top; }}
th {{ background: #f3f5f7; }}
form.filters {{ display: flex; flex-wrap: wrap; gap: .5rem; margin-bottom: 1rem; align-items: end; }}
form.filters label {{ display: flex; flex-direction: column; font-size: 12px; color: #57606a; }}
pre {{ background: #f6f8fa; padding: .6rem; overflow-x: auto; white-space: pre-wrap; }}
.status {{ font-weight: 600; }} .success {{ color: #1a7f37; }} .error {{ color: #b42318; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }} dt {{ color: #57606a; }}
</style></head><body>{body}</body></html>"#,
        title = esc(title)
    ))
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
}

pub async fn login_form(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next);
    let mut token = [0u8; 16];
    let _ = getrandom::fill(&mut token);
    let token = hex::encode(token);
    let err = if q.error.is_some() {
        "<p class=\"error\">That key is unknown, revoked, or lacks the audit role.</p>"
    } else {
        ""
    };
    let page = page(
        "Sign in",
        &format!(
            r#"<h1>sluice audit log</h1>{err}
<form method="post" action="/ui/login">
<input type="hidden" name="next" value="{next}">
<input type="hidden" name="csrf" value="{token}">
<label>API key with the <code>audit</code> role <input type="password" name="key" size="60" autofocus></label>
<button type="submit">Sign in</button></form>"#,
            next = esc(&next)
        ),
    );
    let mut resp = page.into_response();
    let cookie =
        format!("{CSRF_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/ui/login{}", secure_flag(&headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

pub async fn login(State(app): State<Arc<App>>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    // The form must come from our own sign-in page.
    let expected = cookie_value(&headers, CSRF_COOKIE).unwrap_or_default();
    if expected.len() != 32 || f.csrf != expected {
        return (
            StatusCode::FORBIDDEN,
            page(
                "Sign in",
                "<h1>Sign-in expired</h1><p>The form did not come from this page. \
                 <a href=\"/ui/login\">Sign in again</a>.</p>",
            ),
        )
            .into_response();
    }
    // Signing in is for keys the table lets list the audit log.
    let ok = match app.authenticate(f.key.trim()).await {
        Ok(Some(principal)) => grant::<act::ListRecords>(&Caller { principal, client_addr: None }).is_ok(),
        _ => false,
    };
    if !ok {
        return Redirect::to("/ui/login?error=1").into_response();
    }
    // Only local paths: never redirect off-site.
    let next = safe_next(f.next);
    let mut resp = Redirect::to(&next).into_response();
    let key = f.key.trim();
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Redirect::to("/ui/login?error=1").into_response();
    }
    let cookie = format!("{COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/ui{}", secure_flag(&headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn status_class(s: &str) -> &'static str {
    if s == "success" { "success" } else { "error" }
}

fn total_ms(r: &Record) -> String {
    r.timings_ms
        .as_ref()
        .and_then(|t| t.get("total"))
        .and_then(Value::as_f64)
        .map(|t| format!("{t:.1}"))
        .unwrap_or_default()
}

pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<Filter>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ListRecords>(&caller)?;
    let f = Filter {
        status: f.status.filter(|s| !s.is_empty()),
        principal: f.principal.filter(|s| !s.is_empty()),
        policy: f.policy.filter(|s| !s.is_empty()),
        code_sha256: f.code_sha256.filter(|s| !s.is_empty()),
        since: f.since.filter(|s| !s.is_empty()),
        until: f.until.filter(|s| !s.is_empty()),
        limit: f.limit,
        cursor: f.cursor.filter(|s| !s.is_empty()),
        scope: None,
    };
    let page_data = app.records(&g, f.clone()).await?;
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let mut status_opts = String::from("<option value=\"\">any</option>");
    for s in Status::ALL.iter().map(|s| s.as_str()) {
        let sel = if f.status.as_deref() == Some(s) { " selected" } else { "" };
        status_opts += &format!("<option{sel}>{s}</option>");
    }
    let mut rows = String::new();
    for r in &page_data.records {
        rows += &format!(
            "<tr><td>{}</td><td><a href=\"/ui/audit/{id}\">{id}</a></td><td class=\"status {}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.created_at),
            status_class(&r.status),
            esc(&r.status),
            esc(&r.principal),
            opt(&r.policy),
            r.row_count.map(|n| n.to_string()).unwrap_or_default(),
            total_ms(r),
            id = esc(&r.execution_id),
        );
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"7\">No executions match.</td></tr>".into();
    }
    let more = match &page_data.next_cursor {
        Some(c) => {
            let mut q = vec![format!("cursor={}", urlencode(c))];
            for (k, v) in [
                ("status", &f.status),
                ("principal", &f.principal),
                ("policy", &f.policy),
                ("code_sha256", &f.code_sha256),
                ("since", &f.since),
                ("until", &f.until),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", urlencode(v)));
                }
            }
            format!("<p><a href=\"/ui/audit?{}\">Older executions →</a></p>", q.join("&amp;"))
        }
        None => String::new(),
    };
    let body = format!(
        r#"<h1>Executions</h1>
<form class="filters" method="get" action="/ui/audit">
<label>status <select name="status">{status_opts}</select></label>
<label>principal <input name="principal" value="{principal}"></label>
<label>policy <input name="policy" value="{policy}"></label>
<label>code sha256 <input name="code_sha256" value="{code}" size="20"></label>
<label>since (RFC 3339) <input name="since" value="{since}" placeholder="2026-11-22T00:00:00Z"></label>
<label>until <input name="until" value="{until}"></label>
<button type="submit">Filter</button> <a href="/ui/audit">clear</a>
</form>
<table><thead><tr><th>created</th><th>execution</th><th>status</th><th>principal</th><th>policy</th><th>rows</th><th>total ms</th></tr></thead>
<tbody>{rows}</tbody></table>{more}"#,
        principal = opt(&f.principal),
        policy = opt(&f.policy),
        code = opt(&f.code_sha256),
        since = opt(&f.since),
        until = opt(&f.until),
    );
    Ok(page("Executions", &body).into_response())
}

pub async fn detail(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ReadRecord>(&caller)?;
    let r = match app.record(&g, &id).await {
        Ok(r) => r,
        Err(crate::app::AppError::NotFound(_)) => {
            return Ok((
                StatusCode::NOT_FOUND,
                page("Not found", "<h1>No such execution</h1><p><a href=\"/ui/audit\">Back</a></p>"),
            )
                .into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let json = |v: &Option<Value>| {
        v.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_default()
    };
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let body = format!(
        r#"<p><a href="/ui/audit">← all executions</a></p>
<h1>Execution {id}</h1>
<dl>
<dt>status</dt><dd class="status {class}">{status}</dd>
<dt>created</dt><dd>{created}</dd><dt>finished</dt><dd>{finished}</dd>
<dt>principal</dt><dd>{principal}</dd><dt>client</dt><dd>{client}</dd>
<dt>policy</dt><dd>{policy}</dd><dt>environment</dt><dd>{env}</dd>
<dt>rows</dt><dd>{rows}</dd><dt>exit signal</dt><dd>{signal}</dd><dt>blocked syscall</dt><dd>{syscall}</dd>
<dt>sql sha256</dt><dd><code>{sql_sha}</code></dd><dt>code sha256</dt><dd><code>{code_sha}</code></dd>
<dt>hash</dt><dd><code>{hash}</code></dd><dt>previous hash</dt><dd><code>{prev}</code></dd>
</dl>
<h2>Error</h2><p class="error">{message}</p>{traceback}<pre class="error-detail">{error}</pre>
<h2>SQL</h2><pre>{sql}</pre>
<h2>Parameters</h2><pre>{params}</pre>
<h2>Code</h2><pre>{code}</pre>
<h2>Timings (ms)</h2><pre>{timings}</pre>
<h2>Resources</h2><pre>{resources}</pre>"#,
        id = esc(&r.execution_id),
        class = status_class(&r.status),
        status = esc(&r.status),
        created = esc(&r.created_at),
        finished = opt(&r.finished_at),
        principal = esc(&r.principal),
        client = opt(&r.client_addr),
        policy = opt(&r.policy),
        env = opt(&r.environment),
        rows = r.row_count.map(|n| n.to_string()).unwrap_or_default(),
        signal = r.exit_signal.map(|n| n.to_string()).unwrap_or_default(),
        syscall = opt(&r.blocked_syscall),
        sql_sha = opt(&r.sql_sha256),
        code_sha = opt(&r.code_sha256),
        hash = opt(&r.hash),
        prev = opt(&r.prev_hash),
        message = esc(r.error.as_ref().and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("")),
        traceback = r
            .error
            .as_ref()
            .and_then(|e| e.get("traceback"))
            .and_then(Value::as_str)
            .map(|t| format!("<pre class=\"traceback\">{}</pre>", esc(t)))
            .unwrap_or_default(),
        error = esc(&json(&r.error)),
        sql = opt(&r.sql_query),
        params = esc(&json(&r.params)),
        code = opt(&r.classifier_code),
        timings = esc(&json(&r.timings_ms)),
        resources = esc(&json(&r.resources)),
    );
    Ok(page(&format!("Execution {}", r.execution_id), &body).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_and_cookies() {
        assert_eq!(super::esc("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
        let mut h = axum::http::HeaderMap::new();
        h.insert(axum::http::header::COOKIE, "a=1; sluice_key=sluice_abc; b=2".parse().unwrap());
        assert_eq!(super::cookie_value(&h, super::COOKIE).as_deref(), Some("sluice_abc"));
    }
}
