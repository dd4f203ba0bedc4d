//! The audit review pages: the list (filters, text search, newer/older
//! pages with a count, each row's error and SQL at a glance, an export of
//! what the filters select) and one record (with its other runs of the same
//! code). Server-rendered HTML, no JavaScript.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::auth::urlencode;
use super::error::ApiError;
use super::ui::{esc, page};
use crate::app::{App, Caller, act, grant};
use crate::audit::{Filter, Record};
use crate::status::Status;

/// Records per page of the list.
const PAGE: u32 = 50;
/// Bytes of records in one export at most.
const EXPORT_MAX_BYTES: usize = 256 << 20;

/// The list's query: the audit filters, plus the cursors of the newer
/// pages (`back`, comma-separated, `-` for the first page).
#[derive(Deserialize, Default)]
pub struct ListQuery {
    status: Option<String>,
    principal: Option<String>,
    policy: Option<String>,
    code_sha256: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    back: Option<String>,
}

impl ListQuery {
    fn filter(&self, limit: u32) -> Filter {
        let some = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        Filter {
            status: some(&self.status),
            principal: some(&self.principal),
            policy: some(&self.policy),
            code_sha256: some(&self.code_sha256),
            since: some(&self.since),
            until: some(&self.until),
            q: some(&self.q),
            limit: Some(limit),
            cursor: some(&self.cursor),
            scope: None,
        }
    }

    /// The filters as a query string (without paging).
    fn filters_qs(&self) -> String {
        let f = self.filter(PAGE);
        [
            ("status", &f.status),
            ("principal", &f.principal),
            ("policy", &f.policy),
            ("code_sha256", &f.code_sha256),
            ("since", &f.since),
            ("until", &f.until),
            ("q", &f.q),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect::<Vec<_>>()
        .join("&amp;")
    }
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

/// `text` cut to `n` characters on one line, with an ellipsis.
fn excerpt(text: &str, n: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A record's error at a glance: its type (or the syscall) and message.
fn error_brief(r: &Record) -> String {
    let Some(e) = &r.error else { return String::new() };
    let kind = e
        .get("type")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| e.get("syscall").and_then(Value::as_str).map(|s| format!("syscall {s}")));
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    match kind {
        Some(k) if !message.starts_with(&k) => format!("{k}: {}", excerpt(message, 90)),
        _ => excerpt(message, 100),
    }
}

/// "9 (SIGKILL)".
fn signal_name(n: i64) -> String {
    match i32::try_from(n).ok().and_then(|n| nix::sys::signal::Signal::try_from(n).ok()) {
        Some(s) => format!("{n} ({})", s.as_str()),
        None => n.to_string(),
    }
}

fn header_bar(title: &str) -> String {
    format!(
        "<header><h1>{}</h1><form method=\"post\" action=\"/ui/logout\"><button type=\"submit\">Sign out</button></form></header>",
        esc(title)
    )
}

pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(lq): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let g = grant::<act::ListRecords>(&caller)?;
    let f = lq.filter(PAGE);
    let data = app.records(&g, f.clone()).await?;
    let total = app.count_records(&g, f.clone()).await?;
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let mut status_opts = String::from("<option value=\"\">any</option>");
    for s in Status::ALL.iter().map(|s| s.as_str()) {
        let sel = if f.status.as_deref() == Some(s) { " selected" } else { "" };
        status_opts += &format!("<option{sel}>{s}</option>");
    }
    let mut rows = String::new();
    for r in &data.records {
        rows += &format!(
            "<tr><td class=\"wide\">{created}</td><td><a href=\"/ui/audit/{id}\" title=\"{id}\">{short}</a></td>\
             <td class=\"status {class}\">{status}</td><td>{error}</td><td>{principal}</td><td class=\"wide\">{policy}</td>\
             <td><code class=\"sql\">{sql}</code></td><td class=\"wide\">{rows}</td><td class=\"wide\">{ms}</td></tr>",
            created = esc(&r.created_at),
            id = esc(&r.execution_id),
            short = esc(r.execution_id.get(..13).unwrap_or(&r.execution_id)),
            class = status_class(&r.status),
            status = esc(&r.status),
            error = esc(&error_brief(r)),
            principal = esc(&r.principal),
            policy = opt(&r.policy),
            sql = esc(&excerpt(r.sql_query.as_deref().unwrap_or(""), 60)),
            rows = r.row_count.map(|n| n.to_string()).unwrap_or_default(),
            ms = total_ms(r),
        );
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"9\">No executions match.</td></tr>".into();
    }
    // Paging: older by the store's cursor, newer by the cursors kept in `back`.
    let filters = lq.filters_qs();
    let amp = if filters.is_empty() { "" } else { "&amp;" };
    let back: Vec<&str> = lq.back.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()).collect();
    let page_no = back.len() + 1;
    let pages = ((total.max(1) as u64).div_ceil(PAGE as u64)).max(1);
    let newer = back.last().map(|last| {
        let rest = back[..back.len() - 1].join(",");
        let cursor = if *last == "-" { String::new() } else { format!("&amp;cursor={}", urlencode(last)) };
        format!("<a href=\"/ui/audit?{filters}{cursor}{amp}back={}\">← Newer</a>", urlencode(&rest))
    });
    let older = data.next_cursor.as_ref().map(|c| {
        let mut trail = back.clone();
        trail.push(f.cursor.as_deref().unwrap_or("-"));
        format!(
            "<a href=\"/ui/audit?{filters}{amp}cursor={}&amp;back={}\">Older →</a>",
            urlencode(c),
            urlencode(&trail.join(","))
        )
    });
    let body = format!(
        r#"{header}
<form class="filters" method="get" action="/ui/audit">
<label>search SQL and code <input name="q" value="{q}" size="24"></label>
<label>status <select name="status">{status_opts}</select></label>
<label>principal (name or key id) <input name="principal" value="{principal}"></label>
<label>policy <input name="policy" value="{policy}"></label>
<label>code sha256 <input name="code_sha256" value="{code}" size="20"></label>
<label>since (RFC 3339) <input name="since" value="{since}" placeholder="2026-11-22T00:00:00Z"></label>
<label>until <input name="until" value="{until}"></label>
<button type="submit">Filter</button> <a href="/ui/audit">clear</a>
</form>
<div class="pager"><span class="count">{total} executions match · page {page_no} of {pages}</span>{newer}{older}
<a href="/ui/audit.jsonl?{filters}">Export (JSON lines)</a></div>
<div class="scroll"><table><thead><tr><th class="wide">created</th><th>execution</th><th>status</th><th>error</th>
<th>principal</th><th class="wide">policy</th><th>SQL</th><th class="wide">rows</th><th class="wide">total ms</th></tr></thead>
<tbody>{rows}</tbody></table></div>"#,
        header = header_bar("Executions"),
        q = opt(&f.q),
        principal = opt(&f.principal),
        policy = opt(&f.policy),
        code = opt(&f.code_sha256),
        since = opt(&f.since),
        until = opt(&f.until),
        newer = newer.unwrap_or_default(),
        older = older.unwrap_or_default(),
    );
    Ok(page("Executions", &body).into_response())
}

/// Every record the filters select (newest first), as JSON lines, streamed
/// a page at a time; past `EXPORT_MAX_BYTES` a last line says it stopped.
pub async fn export(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(lq): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let grant = grant::<act::ListRecords>(&caller)?;
    let permit = EXPORTS.try_acquire().map_err(|_| ApiError::QueueFull {
        message: format!("{EXPORTS_AT_ONCE} exports are running already; retry when one has finished"),
    })?;
    let mut filter = lq.filter(500);
    filter.cursor = None;
    let state = Export { app, grant, filter, bytes: 0, done: false, _permit: permit };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        Some((Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(st.next_chunk().await)), st))
    });
    let mut resp = (StatusCode::OK, axum::body::Body::from_stream(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"sluice-audit.jsonl\""),
    );
    Ok(resp)
}

/// Exports running at once at most (each reads the whole log once).
const EXPORTS_AT_ONCE: usize = 2;
static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(EXPORTS_AT_ONCE);

/// One export in progress.
struct Export {
    app: Arc<App>,
    grant: crate::app::Grant<act::ListRecords>,
    filter: Filter,
    bytes: usize,
    done: bool,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Export {
    /// The next page's lines (at most the store's page of 4 MiB).
    async fn next_chunk(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let page = match self.app.records(&self.grant, self.filter.clone()).await {
            Ok(p) => p,
            Err(e) => {
                self.done = true;
                let line = serde_json::json!({"error": e.to_string(), "truncated": true});
                return format!("{line}\n").into_bytes();
            }
        };
        for r in &page.records {
            if self.bytes >= EXPORT_MAX_BYTES {
                self.done = true;
                let line = serde_json::json!({"truncated": true, "message": format!(
                    "the export stopped after {} MiB; narrow it (since/until) and export the rest",
                    EXPORT_MAX_BYTES >> 20
                )});
                out.extend(format!("{line}\n").into_bytes());
                return out;
            }
            let line = serde_json::to_vec(r).unwrap_or_default();
            self.bytes += line.len() + 1;
            out.extend(line);
            out.push(b'\n');
        }
        match page.next_cursor {
            Some(c) => self.filter.cursor = Some(c),
            None => self.done = true,
        }
        out
    }
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
    // Other runs of the same code, when this key may list the log.
    let others = match (&r.code_sha256, grant::<act::ListRecords>(&caller)) {
        (Some(sha), Ok(lg)) => {
            let f = Filter { code_sha256: Some(sha.clone()), ..Default::default() };
            let n = app.count_records(&lg, f).await.unwrap_or(0);
            format!(
                "<dt>same code</dt><dd><a class=\"same-code\" href=\"/ui/audit?code_sha256={}\">{} run(s) of this code</a></dd>",
                urlencode(sha),
                n
            )
        }
        _ => String::new(),
    };
    let json = |v: &Option<Value>| {
        v.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_default()
    };
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let body = format!(
        r#"<p><a href="/ui/audit">← all executions</a></p>
{header}
<dl>
<dt>status</dt><dd class="status {class}">{status}</dd>
<dt>created</dt><dd>{created}</dd><dt>finished</dt><dd>{finished}</dd>
<dt>principal</dt><dd>{principal}</dd><dt>client</dt><dd>{client}</dd>
<dt>policy</dt><dd>{policy}</dd><dt>environment</dt><dd>{env}</dd>
<dt>rows</dt><dd>{rows}</dd><dt>exit signal</dt><dd>{signal}</dd><dt>blocked syscall</dt><dd>{syscall}</dd>
{others}
<dt>sql sha256</dt><dd><code>{sql_sha}</code></dd><dt>code sha256</dt><dd><code>{code_sha}</code></dd>
<dt>hash</dt><dd><code>{hash}</code></dd><dt>previous hash</dt><dd><code>{prev}</code></dd>
</dl>
<h2>Error</h2><p class="error">{message}</p>{traceback}<pre class="error-detail">{error}</pre>
<h2>SQL</h2><pre>{sql}</pre>
<h2>Parameters</h2><pre>{params}</pre>
<h2>Code</h2><pre>{code}</pre>
<h2>Timings (ms)</h2><pre>{timings}</pre>
<h2>Resources</h2><pre>{resources}</pre>"#,
        header = header_bar(&format!("Execution {}", r.execution_id)),
        class = status_class(&r.status),
        status = esc(&r.status),
        created = esc(&r.created_at),
        finished = opt(&r.finished_at),
        principal = esc(&r.principal),
        client = opt(&r.client_addr),
        policy = opt(&r.policy),
        env = opt(&r.environment),
        rows = r.row_count.map(|n| n.to_string()).unwrap_or_default(),
        signal = r.exit_signal.map(signal_name).unwrap_or_default(),
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
    fn briefs() {
        assert_eq!(super::excerpt("SELECT  *\n FROM iris", 8), "SELECT *…");
        assert_eq!(super::signal_name(9), "9 (SIGKILL)");
        assert_eq!(super::signal_name(99), "99");
    }
}
