//! The SQL stage: check the query (the `sluice_sql_guard` crate), run the
//! canonical text printed from the checked AST on a read-only pooled
//! connection with a statement timeout and a row limit, under the engine's
//! own permissions for the policy, and encode the rows as Arrow IPC for the
//! sandbox.
//!
//! Three rules hold on every backend (README, "Data sources"): the database
//! runs exactly the text that was checked; statement kinds, table factors,
//! functions and operators are allowed by name; and the engine enforces the
//! table allow-list and read-only-ness too (SQLite's authorizer, a
//! per-policy role on PostgreSQL and MySQL/MariaDB), so a parser mistake is
//! not a breach.

pub mod encode;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use encode::{ColumnInfo, Rows};
/// The parser layer lives in its own crate (pure code, fuzzed in `fuzz/`).
pub use sluice_sql_guard::{Catalog, Checked, Dialect, NameRules, Rejection, allow};

use crate::policy::{Policies, TableAllow};

/// What one policy lets a query touch, as the engine enforces it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub tables: &'a TableAllow,
    /// The database role queries run as (PostgreSQL, MySQL/MariaDB).
    pub role: Option<&'a str>,
}

/// How far the database itself enforces one policy (start-up, /readyz).
#[derive(Debug, Clone, Serialize)]
pub struct EngineGuard {
    pub policy: String,
    /// The database refuses reads of tables the policy does not allow.
    pub tables: bool,
    /// The database refuses writes (not only the read-only transaction).
    pub writes: bool,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error(
        "the query has {expected} placeholder(s) but `params` has {given} value(s); pass one value per placeholder"
    )]
    Params { expected: usize, given: usize },
    #[error("{0}")]
    Role(String),
    #[error("{message}")]
    Database { message: String },
    #[error("the query ran longer than the statement timeout of {seconds} s")]
    Timeout { seconds: f64 },
    #[error("the query returned more than {limit} rows")]
    RowLimit { limit: u64 },
    #[error("the query's values came to more than {limit} bytes")]
    ByteLimit { limit: u64 },
    #[error("cannot open the database {url}: {message}")]
    Connect { url: String, message: String },
    #[error("encoding the rows failed: {0}")]
    Encode(String),
    #[error("{message}")]
    Unavailable { message: String },
}

/// A bind parameter, from the request's `params` array.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// Bind the request's parameters to a query, in order (every backend).
/// `N` is the type a NULL is sent as.
pub(crate) fn bind_params<'q, DB, N>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    params: &[Param],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'t> Option<N>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> bool: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> f64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    for p in params {
        query = match p {
            Param::Null => query.bind(None::<N>),
            Param::Bool(b) => query.bind(*b),
            Param::Int(i) => query.bind(*i),
            Param::Float(f) => query.bind(*f),
            Param::Text(s) => query.bind(s.clone()),
        };
    }
    query
}

/// Read rows into `columns` (one cell each, by `cell`), stopping with
/// `RowLimit` past `limits.max_rows`, then encode them.
pub(crate) async fn collect_rows<R, E>(
    mut stream: impl futures_util::Stream<Item = Result<R, E>> + Unpin,
    mut columns: Vec<encode::ColumnData>,
    limits: FetchLimits,
    on_error: impl Fn(E) -> SqlError,
    cell: impl Fn(&R, usize, &str) -> Result<encode::Cell, SqlError>,
) -> Result<Rows, SqlError> {
    use futures_util::TryStreamExt;
    let mut n: u64 = 0;
    let mut bytes = ByteCount::new(limits.max_bytes);
    while let Some(row) = stream.try_next().await.map_err(&on_error)? {
        if n == limits.max_rows {
            return Err(SqlError::RowLimit { limit: limits.max_rows });
        }
        n += 1;
        for (i, col) in columns.iter_mut().enumerate() {
            let c = cell(&row, i, &col.declared)?;
            bytes.add(&c)?;
            col.cells.push(c);
        }
    }
    drop(stream);
    encode::encode(&columns, n as usize).map_err(|e| SqlError::Encode(e.to_string()))
}

/// The columns of a prepared statement of a statically typed backend, each
/// with its kind; a type sluice cannot read is an error that suggests the
/// backend's own cast (`cast` turns a column name into it).
pub(crate) fn typed_columns<C: sqlx::Column>(
    columns: &[C],
    kind_of: fn(&str) -> Option<encode::Kind>,
    cast: fn(&str) -> String,
) -> Result<Vec<encode::ColumnData>, SqlError> {
    use sqlx::TypeInfo;
    columns
        .iter()
        .map(|c| {
            let declared = c.type_info().name().to_string();
            let kind = kind_of(&declared).ok_or_else(|| SqlError::Database {
                message: format!(
                    "column `{}` has type {declared}, which sluice cannot read yet; cast it in the query, e.g. {}",
                    c.name(),
                    cast(c.name())
                ),
            })?;
            Ok(encode::ColumnData { name: c.name().to_string(), declared, cells: Vec::new(), kind: Some(kind) })
        })
        .collect()
}

/// The policy's tables a role cannot read (verifying a role: each allowed
/// table must be among the role's `readable` ones).
pub(crate) fn unreadable(
    rules: &NameRules,
    tables: &TableAllow,
    readable: &[sluice_sql_guard::Resolved],
) -> Vec<String> {
    let TableAllow::Only(entries) = tables else { return Vec::new() };
    entries
        .iter()
        .filter(|e| !readable.iter().any(|r| rules.same(r, &rules.entry(e))))
        .map(|e| {
            format!("it cannot read allowed table {e} (GRANT SELECT ON it, or remove it from the policy)")
        })
        .collect()
}

/// Catalogue rows from a query selecting `s`, `t`, `c`, `d`.
pub(crate) fn schema_columns<R>(rows: &[R]) -> Vec<SchemaColumn>
where
    R: sqlx::Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    rows.iter()
        .filter_map(|r| {
            Some(SchemaColumn {
                schema: r.try_get("s").ok()?,
                table: r.try_get("t").ok()?,
                column: r.try_get("c").ok()?,
                data_type: r.try_get("d").ok()?,
            })
        })
        .collect()
}

/// Per-request limits of the SQL stage.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_rows: u64,
    /// Bytes the fetched values take in the server (each value's slot, plus
    /// the length of text and blobs): fetching stops as soon as they pass it.
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// The bytes of the values fetched so far, against `FetchLimits::max_bytes`.
pub(crate) struct ByteCount {
    total: u64,
    limit: u64,
}

impl ByteCount {
    pub(crate) fn new(limit: u64) -> Self {
        Self { total: 0, limit }
    }

    pub(crate) fn add(&mut self, c: &encode::Cell) -> Result<(), SqlError> {
        const SLOT: u64 = std::mem::size_of::<encode::Cell>() as u64;
        self.total += SLOT
            + match c {
                encode::Cell::Text(s) => s.len() as u64,
                encode::Cell::Blob(b) => b.len() as u64,
                _ => 0,
            };
        if self.limit > 0 && self.total > self.limit {
            return Err(SqlError::ByteLimit { limit: self.limit });
        }
        Ok(())
    }
}

/// A configured database.
pub enum DataSource {
    Sqlite(sqlite::SqliteSource),
    Postgres(postgres::PgSource),
    MySql(mysql::MySqlSource),
}

impl DataSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        if url.starts_with("sqlite:") {
            return Ok(Self::Sqlite(sqlite::SqliteSource::connect(url, max_connections).await?));
        }
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return Ok(Self::Postgres(postgres::PgSource::connect(url, max_connections).await?));
        }
        if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            return Ok(Self::MySql(mysql::MySqlSource::connect(url, max_connections).await?));
        }
        Err(SqlError::Connect {
            url: redact(url),
            message: "unsupported database URL; use sqlite://PATH, postgres://… or mysql://…".into(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
            Self::MySql(_) => Dialect::MySql,
        }
    }

    pub fn rules(&self) -> &NameRules {
        match self {
            Self::Sqlite(s) => s.rules(),
            Self::Postgres(s) => s.rules(),
            Self::MySql(s) => s.rules(),
        }
    }

    /// Check `sql` against the policy (the parser layer) and return the
    /// canonical text the database would run. On a thread of its own with a
    /// large stack: a long query makes a deep AST, and walking or dropping
    /// it must not overflow a server thread's stack.
    pub async fn check(&self, sql: &str, tables: &TableAllow) -> Result<Checked, Rejection> {
        let (sql, rules, tables) = (sql.to_string(), self.rules().clone(), tables.clone());
        let catalog = self.catalog().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sluice-sql-check".into())
            .stack_size(CHECK_STACK_BYTES)
            .spawn(move || {
                let _ = tx.send(sluice_sql_guard::check(&sql, &rules, &tables, &catalog));
            })
            .map_err(|e| Rejection(format!("sluice could not start checking the query ({e}); retry")))?;
        rx.await.unwrap_or_else(|_| Err(Rejection("checking the query failed inside sluice; retry".into())))
    }

    /// What the guard needs to know of the database (PostgreSQL's columns,
    /// names that may not reach a built-in), at most `CATALOG_MAX_AGE` old.
    async fn catalog(&self) -> Arc<Catalog> {
        match self {
            Self::Sqlite(_) => Arc::default(),
            Self::Postgres(s) => s.catalog.get(|| s.load_catalog()).await,
            Self::MySql(s) => s.catalog.get(|| s.load_catalog()).await,
        }
    }

    /// Check, run and encode one query.
    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Param],
        access: Access<'_>,
        limits: FetchLimits,
    ) -> Result<Rows, SqlError> {
        let checked = self.check(sql, access.tables).await?;
        if checked.placeholders != params.len() {
            return Err(SqlError::Params { expected: checked.placeholders, given: params.len() });
        }
        self.run_unchecked(&checked.canonical, params, access, limits).await
    }

    /// The engine layer alone: run `sql` exactly as given, under the
    /// policy's engine-side permissions (read-only connection and
    /// transaction, SQLite's authorizer, the policy's role), without the
    /// parser's check. `fetch` calls it with checked canonical text; tests
    /// call it with hostile text to prove the engine layer holds by itself.
    pub async fn run_unchecked(
        &self,
        sql: &str,
        params: &[Param],
        access: Access<'_>,
        limits: FetchLimits,
    ) -> Result<Rows, SqlError> {
        let result = match self {
            Self::Sqlite(s) => s.fetch(sql, params, access, limits).await,
            Self::Postgres(s) => s.fetch(sql, params, access, limits).await,
            Self::MySql(s) => s.fetch(sql, params, access, limits).await,
        };
        // Backends know that a statement timed out, not which limit it was.
        result.map_err(|e| match e {
            SqlError::Timeout { .. } => SqlError::Timeout { seconds: limits.timeout.as_secs_f64() },
            other => other,
        })
    }

    /// Can we still reach the database?
    pub async fn ping(&self) -> bool {
        match self {
            Self::Sqlite(s) => s.ping().await,
            Self::Postgres(s) => s.ping().await,
            Self::MySql(s) => s.ping().await,
        }
    }

    /// A description safe to show and log (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(s) => s.describe(),
            Self::Postgres(s) => s.describe(),
            Self::MySql(s) => s.describe(),
        }
    }

    /// Tables the connection's user could write (empty when it is a
    /// read-only role, or for SQLite, which is opened read-only).
    pub async fn writable_tables(&self) -> Result<Vec<String>, SqlError> {
        match self {
            Self::Sqlite(_) => Ok(Vec::new()),
            Self::Postgres(s) => s.writable_tables().await,
            Self::MySql(s) => s.writable_tables().await,
        }
    }

    /// Every column of every table and view outside the system schemas, in
    /// table order.
    pub async fn schema(&self) -> Result<Vec<SchemaColumn>, SqlError> {
        match self {
            Self::Sqlite(s) => s.schema().await,
            Self::Postgres(s) => s.schema().await,
            Self::MySql(s) => s.schema().await,
        }
    }

    /// How the database enforces each policy; an error when a policy's role
    /// is missing or does not match the policy (it must read exactly the
    /// allowed tables and write nothing).
    /// `writable` is what the login user could write (`writable_tables`).
    pub async fn engine_guards(
        &self,
        policies: &Policies,
        writable: &[String],
    ) -> Result<Vec<EngineGuard>, SqlError> {
        let mut out = Vec::new();
        for p in policies.iter() {
            let access = Access { tables: &p.tables, role: p.database.role.as_deref() };
            out.push(self.engine_guard(&p.name, access, writable).await?);
        }
        Ok(out)
    }

    async fn engine_guard(
        &self,
        policy: &str,
        access: Access<'_>,
        writable: &[String],
    ) -> Result<EngineGuard, SqlError> {
        let switch = match self {
            Self::Sqlite(s) => return Ok(s.engine_guard(policy, access)),
            Self::Postgres(_) => "SET LOCAL ROLE inside a READ ONLY transaction",
            Self::MySql(_) => "SET ROLE on a connection of its own",
        };
        let Some(role) = access.role else {
            return Ok(EngineGuard {
                policy: policy.into(),
                tables: false,
                writes: writable.is_empty(),
                detail: format!(
                    "no database role for this policy: only sluice's parser keeps queries to the allowed tables{}; \
                     set [database] role (README, \"A role per policy\")",
                    if writable.is_empty() {
                        ""
                    } else {
                        ", and the login user could write (a READ ONLY transaction does not stop every write)"
                    }
                ),
            });
        };
        let problems = match self {
            Self::Postgres(s) => s.role_problems(role, access.tables).await?,
            Self::MySql(s) => s.role_problems(role, access.tables).await?,
            Self::Sqlite(s) => return Ok(s.engine_guard(policy, access)),
        };
        if !problems.is_empty() {
            return Err(SqlError::Role(format!(
                "policy `{policy}`: database role `{role}` does not match the policy: {}; fix the grants \
                 (README, \"A role per policy\")",
                problems.join("; ")
            )));
        }
        Ok(EngineGuard {
            policy: policy.into(),
            tables: true,
            writes: true,
            detail: format!(
                "queries run as role `{role}` ({switch}), verified at start-up to read exactly the allowed tables \
                 and hold no privilege to write"
            ),
        })
    }
}

/// One column of the database's catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub data_type: String,
}

/// Stack for checking one query (virtual; only what is touched is used).
const CHECK_STACK_BYTES: usize = 256 * 1024 * 1024;

/// How long a loaded catalogue is trusted before it is read again.
const CATALOG_MAX_AGE: Duration = Duration::from_secs(30);

/// The catalogue a backend last loaded, reloaded when older than
/// `CATALOG_MAX_AGE` (a table or stored function created meanwhile is
/// refused or treated conservatively until then, never let through).
#[derive(Default)]
pub(crate) struct CatalogCache(tokio::sync::Mutex<Option<(std::time::Instant, Arc<Catalog>)>>);

impl CatalogCache {
    async fn get<F: std::future::Future<Output = Result<Catalog, SqlError>>>(
        &self,
        load: impl FnOnce() -> F,
    ) -> Arc<Catalog> {
        let mut slot = self.0.lock().await;
        if let Some((at, c)) = slot.as_ref()
            && at.elapsed() < CATALOG_MAX_AGE
        {
            return c.clone();
        }
        match load().await {
            Ok(c) => {
                let c = Arc::new(c);
                *slot = Some((std::time::Instant::now(), c.clone()));
                c
            }
            Err(e) => {
                tracing::warn!("reading the database catalogue failed: {e}");
                slot.as_ref().map(|(_, c)| c.clone()).unwrap_or_default()
            }
        }
    }
}

/// A URL without its password, for messages.
/// A database URL fit to show: the password of `user:password@` and the
/// value of every query parameter that can carry a credential (`password`,
/// `sslpassword`, `token`, `secret`, keys…) become `***`.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &head[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &head[..s + 3], &creds[..c], &head[at..]),
                None => head.to_string(),
            }
        }
        _ => head.to_string(),
    };
    if let Some(q) = query {
        let secret = |k: &str| {
            // Names are compared as the driver reads them (%-decoded).
            let k = percent_decode(k).to_ascii_lowercase();
            ["pass", "pwd", "secret", "token", "key", "auth", "cred"].iter().any(|w| k.contains(w))
        };
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if secret(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{out}?{}", params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(
            super::redact("postgres://h/db?user=u&password=s3cret&sslmode=require&sslpassword=x"),
            "postgres://h/db?user=u&password=***&sslmode=require&sslpassword=***"
        );
        assert_eq!(super::redact("mysql://u:p@h/db?PWD=x&token=y"), "mysql://u:***@h/db?PWD=***&token=***");
        assert_eq!(super::redact("postgres://h/db?p%61ssword=x"), "postgres://h/db?p%61ssword=***");
    }
}
