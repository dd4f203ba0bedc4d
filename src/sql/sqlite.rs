//! SQLite, through rusqlite (which shares sqlx's `libsqlite3-sys`). The
//! engine enforces the policy itself:
//! - opened `SQLITE_OPEN_READONLY` with `PRAGMA query_only`;
//! - an authorizer, consulted by SQLite while it prepares a statement, that
//!   allows reading the policy's tables and calling the allowed functions
//!   and denies everything else (ATTACH, PRAGMA, writes, VACUUM, …);
//! - `SQLITE_LIMIT_ATTACHED = 0`, defensive mode, untrusted schema, no
//!   double-quoted string literals, no comments, no extension loading;
//! - exactly one statement: rusqlite refuses a non-empty prepare tail;
//! - the statement timeout is a progress handler that interrupts the VM.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use futures_util::future::BoxFuture;

use super::encode::{Column, Table};
use super::{
    Access, Dialect, EngineGuard, FetchLimits, NameRules, Param, Rows, SchemaColumn, SqlError, allow,
};
use crate::policy::TableAllow;

pub struct SqliteSource {
    path: PathBuf,
    url: String,
    rules: NameRules,
    /// Idle connections; at most `slots` are in use at once.
    idle: Mutex<Vec<Connection>>,
    slots: Arc<Semaphore>,
}

/// Functions SQLite calls for operators (`LIKE`, `GLOB`, `->`, `->>`) and
/// that the authorizer sees by these names.
const OPERATOR_FUNCTIONS: &[&str] = &["like", "glob", "->", "->>"];

impl SqliteSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        let path = PathBuf::from(
            url.strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url)
                .split('?')
                .next()
                .unwrap_or(""),
        );
        let source = Self {
            path,
            url: url.into(),
            rules: NameRules::sqlite(),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
        };
        let conn =
            source.open().map_err(|e| SqlError::Connect { url: url.into(), message: e.to_string() })?;
        source.idle.lock().expect("pool lock").push(conn);
        Ok(source)
    }

    /// A connection with every engine-side restriction but the per-policy
    /// authorizer, which `run` installs for each statement.
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "query_only", true)?;
        // Sorts, DISTINCT and temporary b-trees spill to temporary files past
        // the page cache instead of growing the server's heap.
        conn.pragma_update(None, "temp_store", "FILE")?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, (2 * sluice_sql_guard::MAX_SQL_BYTES) as i32)?;
        for (option, on) in [
            (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
            (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
            (DbConfig::SQLITE_DBCONFIG_DQS_DML, false),
            (DbConfig::SQLITE_DBCONFIG_DQS_DDL, false),
            (DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false),
            (DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false),
            (DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE, false),
            (DbConfig::SQLITE_DBCONFIG_ENABLE_COMMENTS, false),
        ] {
            conn.set_db_config(option, on)?;
        }
        Ok(conn)
    }

    pub fn engine_guard(&self, policy: &str, access: Access<'_>) -> EngineGuard {
        let mut detail =
            "read-only connection with query_only; an authorizer allows reading the policy's tables \
                          and calling the allowed functions only; no ATTACH, defensive mode"
                .to_string();
        if let Some(role) = access.role {
            tracing::warn!(
                "policy `{policy}` names database role `{role}`, which SQLite does not have; its authorizer enforces \
                 the policy instead"
            );
            detail += &format!(" (database.role `{role}` does not apply to SQLite)");
        }
        EngineGuard { policy: policy.into(), tables: true, writes: true, detail }
    }

    /// Every column of every table and view.
    pub async fn schema(&self) -> Result<Vec<SchemaColumn>, SqlError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT m.name, p.name, p.type FROM sqlite_schema m, pragma_table_info(m.name) p \
                     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(SchemaColumn {
                        schema: "main".into(),
                        table: r.get(0)?,
                        column: r.get(1)?,
                        data_type: r.get(2)?,
                    })
                })
                .map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
        .await
    }

    /// Run `f` on a pooled connection on a blocking thread. The slot is held
    /// until `f` returns, even when the request has gone away meanwhile.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| unavailable("closed"))?;
        let conn = self.take()?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            drop(permit);
            (conn, r)
        })
        .await
        .map_err(|e| SqlError::Database { message: format!("the SQLite worker failed: {e}") })?;
        // A connection left inside a transaction is in an unknown state.
        if conn.is_autocommit() {
            self.put(conn);
        }
        result
    }

    fn take(&self) -> Result<Connection, SqlError> {
        match self.idle.lock().expect("pool lock").pop() {
            Some(c) => Ok(c),
            None => self.open().map_err(|e| unavailable(&e.to_string())),
        }
    }

    fn put(&self, conn: Connection) {
        self.idle.lock().expect("pool lock").push(conn);
    }

    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Param],
        access: Access<'_>,
        limits: FetchLimits,
    ) -> Result<Rows, SqlError> {
        // Set when the request goes away, so the statement stops at once.
        let cancelled = Arc::new(AtomicBool::new(false));
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _cancel = CancelOnDrop(cancelled.clone());
        let job = Job {
            sql: sql.to_string(),
            params: params.to_vec(),
            tables: access.tables.clone(),
            rules: self.rules.clone(),
            limits,
            cancelled,
        };
        self.with_conn(move |conn| {
            let r = job.run(conn);
            // Never leave a policy's authorizer or the deadline behind.
            let _ = conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            r
        })
        .await
    }
}

struct Job {
    sql: String,
    params: Vec<Param>,
    tables: TableAllow,
    rules: NameRules,
    limits: FetchLimits,
    cancelled: Arc<AtomicBool>,
}

impl Job {
    fn run(self, conn: &Connection) -> Result<Rows, SqlError> {
        let deadline = Instant::now() + self.limits.timeout;
        let timed_out = Arc::new(AtomicBool::new(false));
        {
            let (flag, cancelled) = (timed_out.clone(), self.cancelled.clone());
            // Called every ~1000 VM instructions; `true` interrupts.
            conn.progress_handler(
                1000,
                Some(move || {
                    if Instant::now() >= deadline {
                        flag.store(true, Ordering::Relaxed);
                    }
                    flag.load(Ordering::Relaxed) || cancelled.load(Ordering::Relaxed)
                }),
            )
            .map_err(db_error)?;
        }
        let denied = Arc::new(Mutex::new(None::<String>));
        let stored = stored_names(conn).map_err(db_error)?;
        conn.authorizer(Some(authorizer(self.tables.clone(), self.rules.clone(), stored, denied.clone())))
            .map_err(db_error)?;
        let result = self.read(conn);
        result.map_err(|e| {
            if timed_out.load(Ordering::Relaxed) {
                return SqlError::Timeout { seconds: self.limits.timeout.as_secs_f64() };
            }
            match denied.lock().expect("denied lock").take() {
                Some(what) => SqlError::Rejected(super::Rejection(format!(
                    "the database refused {what}: it is not allowed by this policy"
                ))),
                None => e,
            }
        })
    }

    fn read(&self, conn: &Connection) -> Result<Rows, SqlError> {
        // Exactly one statement: rusqlite refuses a tail that holds another.
        let mut stmt = conn.prepare(&self.sql).map_err(too_big(self.limits.max_bytes))?;
        // The engine itself refuses to build a value (a row, a group_concat
        // accumulating in an aggregate) larger than each column's share of
        // the request's byte budget (SQLITE_TOOBIG).
        if self.limits.max_bytes > 0 {
            let share = self.limits.max_bytes / stmt.column_count().max(1) as u64;
            let cap = share.clamp(1 << 20, i32::MAX as u64) as i32;
            conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, cap).map_err(db_error)?;
        }
        if stmt.parameter_count() != self.params.len() {
            return Err(SqlError::Params { expected: stmt.parameter_count(), given: self.params.len() });
        }
        for (i, p) in self.params.iter().enumerate() {
            let r = match p {
                Param::Null => stmt.raw_bind_parameter(i + 1, rusqlite::types::Null),
                Param::Bool(b) => stmt.raw_bind_parameter(i + 1, b),
                Param::Int(v) => stmt.raw_bind_parameter(i + 1, v),
                Param::Float(v) => stmt.raw_bind_parameter(i + 1, v),
                Param::Text(s) => stmt.raw_bind_parameter(i + 1, s),
            };
            r.map_err(db_error)?;
        }
        let columns =
            stmt.columns().iter().map(|c| Column::dynamic(c.name(), c.decl_type().unwrap_or(""))).collect();
        let mut table = Table::new(columns, self.limits);
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(too_big(self.limits.max_bytes))? {
            for (i, col) in table.start_row()?.iter_mut().enumerate() {
                match row.get_ref(i).map_err(db_error)? {
                    ValueRef::Null => col.null(),
                    ValueRef::Integer(v) => col.int(v),
                    ValueRef::Real(v) => col.float(v),
                    ValueRef::Text(t) => match std::str::from_utf8(t) {
                        Ok(t) => col.text(t),
                        Err(_) => col.text(&String::from_utf8_lossy(t)),
                    },
                    ValueRef::Blob(b) => col.bytes(b),
                }
            }
            table.end_row()?;
        }
        drop(rows);
        table.finish()
    }
}

/// Names (lower case) of the tables and views in the database file, read
/// before the authorizer goes in.
fn stored_names(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT lower(name) FROM sqlite_schema WHERE type IN ('table', 'view')")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    names.collect()
}

/// The engine-side allow-list: reads of the policy's tables and of the
/// allowed table functions, the allowed functions, SELECT and recursive
/// CTEs. Everything else — ATTACH, PRAGMA, writes, DDL, transactions,
/// VACUUM, ANALYZE — is denied. The first denial is kept for the message.
///
/// The "accessor" SQLite passes (the view a read happens through) is not
/// trusted: SQLite passes a CTE's name there too, and a CTE can be named
/// like an allowed view. So a view's base tables must be allowed as well.
/// A read of no column at all (`count(*)`, `EXISTS (SELECT 1 …)`) comes
/// without a schema, for tables and CTEs alike: it is allowed for names
/// that are no table or view in the file (CTEs, whose own reads are
/// checked), never for a stored table the policy does not allow.
fn authorizer(
    tables: TableAllow,
    rules: NameRules,
    stored: HashSet<String>,
    denied: Arc<Mutex<Option<String>>>,
) -> impl for<'r> FnMut(AuthContext<'r>) -> Authorization + Send + 'static {
    move |ctx: AuthContext<'_>| {
        let (ok, what) = match ctx.action {
            AuthAction::Select | AuthAction::Recursive => (true, String::new()),
            AuthAction::Read { table_name, column_name } => {
                let r = rules.stored(ctx.database_name.unwrap_or("main"), table_name);
                let lower = table_name.to_ascii_lowercase();
                let eponymous = allow::table_function(Dialect::Sqlite, &lower);
                // The schema tables (`sqlite_schema`, …) are no rows of the
                // file's own catalogue list, and never CTEs.
                let cte = column_name.is_empty()
                    && ctx.database_name.is_none()
                    && !stored.contains(&lower)
                    && !lower.starts_with("sqlite_")
                    && !lower.starts_with("pragma_");
                (rules.allows(&tables, &r) || eponymous || cte, format!("reading table `{table_name}`"))
            }
            AuthAction::Function { function_name } => {
                let name = function_name.to_ascii_lowercase();
                (
                    allow::function(Dialect::Sqlite, &name) || OPERATOR_FUNCTIONS.contains(&name.as_str()),
                    format!("calling function `{function_name}`"),
                )
            }
            AuthAction::Attach { .. } => (false, "ATTACH".into()),
            AuthAction::Pragma { pragma_name, .. } => (false, format!("PRAGMA {pragma_name}")),
            other => (false, format!("the operation {other:?}")),
        };
        if ok {
            Authorization::Allow
        } else {
            denied.lock().expect("denied lock").get_or_insert(what);
            Authorization::Deny
        }
    }
}

fn unavailable(why: &str) -> SqlError {
    SqlError::Unavailable { message: format!("the SQLite database cannot be opened: {why}") }
}

/// `db_error`, except that SQLITE_TOOBIG is the request's byte limit.
fn too_big(limit: u64) -> impl Fn(rusqlite::Error) -> SqlError {
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::TooBig => {
            SqlError::ByteLimit { limit }
        }
        e => db_error(e),
    }
}

fn db_error(e: rusqlite::Error) -> SqlError {
    match e {
        rusqlite::Error::MultipleStatement => SqlError::Rejected(super::Rejection(
            "the database found more than one statement; send exactly one".into(),
        )),
        rusqlite::Error::SqliteFailure(_, Some(message)) => SqlError::Database { message },
        other => SqlError::Database { message: other.to_string() },
    }
}

impl super::Backend for SqliteSource {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn rules(&self) -> &NameRules {
        &self.rules
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn ping(&self) -> BoxFuture<'_, bool> {
        Box::pin(async {
            self.with_conn(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map_err(db_error))
                .await
                .is_ok()
        })
    }

    fn fetch<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param],
        access: Access<'a>,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Rows, SqlError>> {
        Box::pin(SqliteSource::fetch(self, sql, params, access, limits))
    }

    fn schema(&self) -> BoxFuture<'_, Result<Vec<SchemaColumn>, SqlError>> {
        Box::pin(SqliteSource::schema(self))
    }

    fn engine_guard<'a>(
        &'a self,
        policy: &'a str,
        access: Access<'a>,
        _writable: &'a [String],
    ) -> BoxFuture<'a, Result<EngineGuard, SqlError>> {
        let guard = SqliteSource::engine_guard(self, policy, access);
        Box::pin(async move { Ok(guard) })
    }
}
