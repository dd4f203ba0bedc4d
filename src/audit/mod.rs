//! The audit store: one row per request, inserted as `running` before any
//! work and completed afterwards, linked into a SHA-256 chain in the order
//! rows complete. SQLite (default, in the data dir) or PostgreSQL, through
//! sqlx's `Any` driver with one migrations folder per backend.
//!
//! Nothing here edits or deletes a completed row. Writers serialize on the
//! chain head (SQLite `BEGIN IMMEDIATE`, PostgreSQL `SELECT … FOR UPDATE`),
//! so several sluice processes can share one store without forking the chain.

pub mod chain;
pub mod keys;
mod query;
mod record;

use record::{COLUMNS, record_from, to_text, trusted};
pub use record::{Filter, Page, Record, Scope};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use uuid::Uuid;

use crate::config::process_start;
use crate::sql::redact;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database {url}: {message}")]
    Open { url: String, message: String },
    #[error("audit database migration failed: {0}")]
    Migrate(String),
    #[error("audit database: {0}")]
    Query(#[from] sqlx::Error),
    /// What was not found, as a whole phrase ("no execution …").
    #[error("{0}")]
    NotFound(String),
    #[error("invalid filter `{field}`: {message}")]
    Filter { field: &'static str, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store.
#[derive(Clone)]
pub struct AuditStore {
    pool: AnyPool,
    backend: Backend,
    /// Identifies this process's rows, to find the ones a crash left behind.
    server_id: String,
}

/// What is known about a request when it starts.
#[derive(Debug, Clone, Default)]
pub struct NewExecution {
    pub execution_id: Uuid,
    pub principal: String,
    pub client_addr: Option<String>,
    pub policy: Option<String>,
    pub environment: Option<String>,
    pub sql_query: Option<String>,
    pub params: Option<Value>,
    pub classifier_code: Option<String>,
}

/// How it ended.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub status: crate::status::Status,
    pub error: Option<Value>,
    pub row_count: Option<i64>,
    pub timings_ms: Option<Value>,
    pub resources: Option<Value>,
    pub exit_signal: Option<i64>,
    pub blocked_syscall: Option<String>,
    /// What left the sandbox (`output::summary`).
    pub output: Option<Value>,
    /// The whole SQL and code, for a request that got as far as the
    /// database: `start` keeps only an excerpt of long texts, so a request
    /// refused at once costs the store a few KiB, not its whole body.
    pub full_text: Option<(String, String)>,
}

/// Bytes of a long SQL or code text kept for a request refused before it
/// reached the database (its sha256 is always of the whole text).
pub const EXCERPT_BYTES: usize = 8 * 1024;
/// Bytes of records one `GET /audit` page holds at most.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// `text` as the audit row keeps it before the request has run: whole up to
/// `EXCERPT_BYTES`, else its head and how long it was.
pub fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return text.to_string();
    }
    let head = &text[..text.floor_char_boundary(EXCERPT_BYTES)];
    format!("{head}\n… [sluice: {} bytes in all; the sha256 is of the whole text]", text.len())
}

/// `params` as the audit row keeps them: whole up to `EXCERPT_BYTES` of
/// JSON, else `{"excerpt": <head of the JSON text>, "bytes": n}`.
pub fn params_excerpt(params: &[Value]) -> Value {
    let v = Value::Array(params.to_vec());
    let text = v.to_string();
    if text.len() <= EXCERPT_BYTES {
        return v;
    }
    serde_json::json!({"excerpt": excerpt(&text), "bytes": text.len()})
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Now, as RFC 3339 UTC with milliseconds (sorts as text).
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).expect("formattable")
}

/// Normalize a caller's RFC 3339 time to our stored form.
pub(super) fn parse_time(field: &'static str, s: &str) -> Result<String, AuditError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
        AuditError::Filter {
            field,
            message: format!("`{s}` is not an RFC 3339 time ({e}); e.g. 2026-11-22T16:00:00Z"),
        }
    })?;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    Ok(t.to_offset(time::UtcOffset::UTC).format(&fmt).expect("formattable"))
}

/// This process, on this host, since this boot of it.
fn server_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let pid = std::process::id();
    let start = process_start(pid).map(|s| s.to_string()).unwrap_or_default();
    format!("{}:{}:{}", host.trim(), pid, start)
}

impl AuditStore {
    /// Open (creating a SQLite file if needed) and migrate.
    pub async fn open(url: &str) -> Result<AuditStore, AuditError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(AuditError::Open {
                url: redact(url),
                message: "use sqlite://PATH or postgres://…".into(),
            });
        };
        let url_full = match backend {
            // Create the file on first use; wait for writers instead of failing.
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let open_err = |e: sqlx::Error| AuditError::Open { url: redact(url), message: e.to_string() };
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        // In WAL mode NORMAL keeps every commit across a
                        // process crash and skips the per-commit fsync; a
                        // power loss may drop the last commits.
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url_full)
            .await
            .map_err(open_err)?;
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        // Several sluice processes may start on one store at once; one of
        // them applies a migration, the others see it applied on retry.
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!("audit migration attempt {attempt} failed ({e}); retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(AuditError::Migrate(e.to_string())),
            }
        }
        Ok(AuditStore { pool, backend, server_id: server_identity() })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Insert the `running` row of a request, before any work.
    pub async fn start(&self, e: &NewExecution) -> Result<(), AuditError> {
        sqlx::query(
            "INSERT INTO executions (execution_id, status, created_at, principal, client_addr, policy, environment, \
             sql_query, sql_sha256, params, classifier_code, code_sha256, server_id) \
             VALUES ($1, 'running', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(e.execution_id.to_string())
        .bind(now())
        .bind(&e.principal)
        .bind(&e.client_addr)
        .bind(&e.policy)
        .bind(&e.environment)
        .bind(e.sql_query.as_deref().map(excerpt))
        .bind(e.sql_query.as_deref().map(sha256_hex))
        .bind(to_text(&e.params))
        .bind(e.classifier_code.as_deref().map(excerpt))
        .bind(e.classifier_code.as_deref().map(sha256_hex))
        .bind(&self.server_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Complete a row and link it into the chain.
    pub async fn finish(&self, id: Uuid, f: &Finish) -> Result<(), AuditError> {
        chain::complete(self, &id.to_string(), f).await
    }

    /// Mark `running` rows whose server process is gone as `interrupted`
    /// (their original fields are kept). Returns how many.
    pub async fn mark_interrupted(&self) -> Result<u64, AuditError> {
        let rows = sqlx::query("SELECT execution_id, server_id FROM executions WHERE status = 'running'")
            .fetch_all(&self.pool)
            .await?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let mut n = 0;
        for row in rows {
            let id: String = row.try_get("execution_id")?;
            let server: String = row.try_get("server_id")?;
            let mut parts = server.splitn(3, ':');
            let (h, pid, start) = (parts.next(), parts.next(), parts.next());
            // Only this host's processes can be checked; another host's
            // server may still be working on its row.
            if h != Some(host.trim()) || server == self.server_id {
                continue;
            }
            let alive = pid
                .and_then(|p| p.parse::<u32>().ok())
                .and_then(process_start)
                .is_some_and(|s| Some(s.to_string().as_str()) == start);
            if !alive {
                let f = Finish {
                    status: crate::status::Status::Interrupted,
                    error: Some(serde_json::json!({
                        "category": "interrupted",
                        "message": "the sluice process running this request stopped before it finished",
                    })),
                    ..Default::default()
                };
                chain::complete(self, &id, &f).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The record `id` if `scope` (a policy-limited key) may see it.
    pub async fn get_scoped(&self, id: &str, scope: Option<&Scope>) -> Result<Record, AuditError> {
        let r = self.get(id).await?;
        match scope {
            Some(s) if !s.sees(&r) => Err(AuditError::NotFound(format!("no execution {id}"))),
            _ => Ok(r),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Record, AuditError> {
        let row = sqlx::query(trusted(format!("SELECT {COLUMNS} FROM executions WHERE execution_id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| AuditError::NotFound(format!("no execution {id}")))?;
        Ok(record_from(&row)?)
    }

    /// The one execution whose id starts with `prefix` (at least 8
    /// characters), for people who copy a short id.
    pub async fn resolve_prefix(&self, prefix: &str) -> Result<String, AuditError> {
        if prefix.len() >= 36 {
            return Ok(prefix.to_string());
        }
        if prefix.len() < 8 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(AuditError::Filter {
                field: "id",
                message: format!(
                    "`{}` is not an execution id or a prefix of at least 8 of its characters",
                    excerpt(prefix)
                ),
            });
        }
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT execution_id FROM executions WHERE execution_id LIKE $1 ORDER BY seq LIMIT 3",
        )
        .bind(format!("{}%", prefix.to_ascii_lowercase()))
        .fetch_all(&self.pool)
        .await?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(AuditError::NotFound(format!("no execution starts with {prefix}"))),
            more => Err(AuditError::Filter {
                field: "id",
                message: format!(
                    "{prefix} is the start of several executions ({}, …): give more of it",
                    more.join(", ")
                ),
            }),
        }
    }

    /// Every record in chain order (for export and verification).
    pub async fn chain_records(&self) -> Result<Vec<(i64, Record)>, AuditError> {
        let rows = sqlx::query(trusted(format!(
            "SELECT chain_seq, {COLUMNS} FROM executions WHERE chain_seq IS NOT NULL ORDER BY chain_seq"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get::<i64, _>("chain_seq")?, record_from(r)?))).collect()
    }

    /// Every record, oldest first (export).
    pub async fn all(&self) -> Result<Vec<Record>, AuditError> {
        let rows = sqlx::query(trusted(format!("SELECT {COLUMNS} FROM executions ORDER BY seq")))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record_from).collect::<Result<_, _>>()?)
    }
}
