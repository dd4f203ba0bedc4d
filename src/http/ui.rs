//! The review pages' frame: sign-in and sign-out, the page template and
//! its headers (the pages themselves: `ui_audit.rs`). Protected by the same
//! keys as the API (role `audit`): a browser signs in once on /ui/login,
//! which keeps the key in an HttpOnly, SameSite=Strict cookie.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{SESSION_COOKIE as COOKIE, cookie_value};
use crate::app::{App, Caller, act, grant};

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

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(super) fn page(title: &str, body: &str) -> Html<String> {
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
header {{ display: flex; justify-content: space-between; align-items: center; gap: 1rem; flex-wrap: wrap; }}
header form {{ margin: 0; }} .scroll {{ overflow-x: auto; }} code.sql {{ font-size: 12px; color: #424a53; }}
.pager {{ display: flex; gap: 1rem; align-items: center; margin: .75rem 0; }} .muted {{ color: #57606a; }}
@media (max-width: 700px) {{
  body {{ margin: .75rem; }} .wide {{ display: none; }}
  form.filters label {{ flex: 1 1 45%; }} form.filters input, form.filters select {{ width: 100%; }}
  dl {{ grid-template-columns: 1fr; }} dd {{ margin: 0 0 .4rem; }}
}}
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

/// Sign out: the key cookie is cleared.
pub async fn logout(headers: HeaderMap) -> Response {
    let mut resp = Redirect::to("/ui/login").into_response();
    let cookie =
        format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{}", secure_flag(&headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
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
