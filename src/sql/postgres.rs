//! PostgreSQL: every query runs inside `BEGIN READ ONLY` with
//! `SET LOCAL statement_timeout`, `standard_conforming_strings` on, the
//! `search_path` pinned to the default schema and, where the policy names
//! one, `SET LOCAL ROLE` to the policy's role, so that PostgreSQL's own
//! permissions enforce the table allow-list. The query travels through the
//! extended (prepared) protocol, which carries exactly one statement; the
//! transaction is always rolled back and the session reset (advisory locks,
//! settings), and a connection whose ending is in doubt is closed instead
//! of going back to the pool. Values are decoded per column type straight
//! into Arrow columns; a query without parameters whose columns sluice
//! decodes itself is read as a binary COPY stream (`postgres_copy.rs`).

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{
    AssertSqlSafe, Column as _, Connection as _, Executor, Postgres, Row, SqlSafeStr, Statement,
    TypeInfo as _,
};

use futures_util::future::BoxFuture;

use super::encode::Table;
use super::postgres_copy::{self, copy_statement};
use super::postgres_types::{PgType, push_cell};
use super::{
    Access, Catalog, CatalogCache, Dialect, FetchLimits, NameRules, Param, Rows, SchemaColumn, SqlError,
    bind_params, cancel_then_close, check_param_count, collect_rows, redact, schema_columns, typed_columns,
};
use crate::policy::TableAllow;

pub struct PgSource {
    pub(super) pool: PgPool,
    url: String,
    pub(super) rules: NameRules,
    pub(super) catalog: CatalogCache,
}

/// Waiting longer than this for a pooled connection answers 503, not a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The client gives the server this long past the statement timeout before
/// it drops the connection itself.
const CLIENT_GRACE: Duration = Duration::from_secs(2);
/// Undoes everything a session can keep past a rollback.
const RESET: &str = "ROLLBACK; SELECT pg_advisory_unlock_all(); RESET ALL";

/// A pooled connection that is closed, not returned, unless the request
/// ended cleanly (`release`). Dropped otherwise (the row limit, a deadline,
/// a stop's kill), it first has PostgreSQL cancel whatever the backend still
/// runs, from another session, so the work stops now and not at the
/// statement timeout; only then is the connection closed, so the backend
/// pid cannot have been reused by then.
pub(super) struct Lease {
    conn: Option<PoolConnection<Postgres>>,
    pool: PgPool,
    /// `pg_backend_pid()`, once known.
    pid: Option<i32>,
}

impl Lease {
    pub(super) async fn acquire(pool: &PgPool) -> Result<Self, SqlError> {
        let conn = pool.acquire().await.map_err(acquire_error)?;
        Ok(Self { conn: Some(conn), pool: pool.clone(), pid: None })
    }

    pub(super) fn conn(&mut self) -> &mut sqlx::PgConnection {
        self.conn.as_mut().expect("leased")
    }

    /// Roll back and reset the session; back to the pool only if that worked.
    pub(super) async fn release(mut self) {
        if self.conn().execute(RESET).await.is_ok() {
            drop(self.conn.take());
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let Some(pid) = self.pid else {
            conn.close_on_drop();
            return;
        };
        let what = format!("the abandoned statement of backend {pid}");
        cancel_then_close(conn, self.pool.connect_options(), what, move |mut other| {
            Box::pin(async move {
                // Twice: a cancel that lands between two steps of the
                // statement's start is lost; the leased session is still
                // ours, so a second one cannot reach anyone else's query.
                for _ in 0..2 {
                    sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&mut other).await?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(other)
            })
        });
    }
}

impl PgSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        let connect_err = |e: sqlx::Error| SqlError::Connect { url: redact(url), message: e.to_string() };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(connect_err)?;
        let schema: Option<String> =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(connect_err)?;
        let Some(default_schema) = schema else {
            return Err(SqlError::Connect {
                url: redact(url),
                message:
                    "no schema of the search_path exists, so unqualified table names mean nothing; set the \
                          role's search_path to the schema of your tables"
                        .into(),
            });
        };
        let rules = NameRules { dialect: Dialect::Postgres, default_schema, case_sensitive: true };
        Ok(Self { pool, url: url.into(), rules, catalog: CatalogCache::default() })
    }

    /// Tables (with schema) this connection's role could write, if any.
    pub async fn writable_tables(&self) -> Result<Vec<String>, SqlError> {
        let rows = sqlx::query(
            "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE' \
             AND (has_table_privilege(quote_ident(table_schema) || '.' || quote_ident(table_name), 'INSERT') \
               OR has_table_privilege(quote_ident(table_schema) || '.' || quote_ident(table_name), 'UPDATE') \
               OR has_table_privilege(quote_ident(table_schema) || '.' || quote_ident(table_name), 'DELETE')) \
             ORDER BY 1 LIMIT 20",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.iter().filter_map(|r| r.try_get::<String, _>("t").ok()).collect())
    }

    /// Tables and columns with their types (for /schema).
    pub async fn schema(&self) -> Result<Vec<SchemaColumn>, SqlError> {
        let rows = sqlx::query(
            "SELECT table_schema::text AS s, table_name::text AS t, column_name::text AS c, data_type::text AS d \
             FROM information_schema.columns \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg\\_%' \
             ORDER BY table_schema, table_name, ordinal_position",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(schema_columns(&rows))
    }

    /// Every table's columns, for reading `t.name` as PostgreSQL will, and
    /// the functions outside pg_catalog named like allowed ones.
    pub(super) async fn load_catalog(&self) -> Result<Catalog, SqlError> {
        let mut catalog = Catalog::default();
        for c in self.schema().await? {
            catalog.add_column(&c.schema, &c.table, &c.column);
        }
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        for n in names.iter().filter(|n| super::allow::function(Dialect::Postgres, n)) {
            catalog.add_shadowed(n);
        }
        // Operators outside pg_catalog on built-in types can be chosen for
        // built-in operands (the best type match wins, whatever the path).
        let operators: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT o.oprname::text FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND (o.oprleft = 0 OR o.oprleft IN (SELECT oid FROM pg_type WHERE typnamespace = 'pg_catalog'::regnamespace)) \
             AND o.oprright IN (SELECT oid FROM pg_type WHERE typnamespace = 'pg_catalog'::regnamespace)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        for op in &operators {
            catalog.add_shadowed_operator(op);
        }
        Ok(catalog)
    }

    /// `BEGIN READ ONLY` and the settings every query runs under.
    pub(super) fn begin(&self, limits: FetchLimits, role: Option<&str>) -> String {
        let ms = limits.timeout.as_millis().max(1);
        let mut sql = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SET LOCAL standard_conforming_strings = on; \
             SET LOCAL search_path = {}",
            self.rules.quote(&self.rules.default_schema)
        );
        if let Some(role) = role {
            sql += &format!("; SET LOCAL ROLE {}", self.rules.quote(role));
        }
        sql
    }

    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Param],
        access: Access<'_>,
        limits: FetchLimits,
    ) -> Result<Rows, SqlError> {
        if sql.contains('\0') {
            // PostgreSQL's Parse would take the text up to it as the statement.
            return Err(SqlError::Rejected(super::Rejection("the query contains a NUL character".into())));
        }
        let mut lease = Lease::acquire(&self.pool).await?;
        // Our own fixed text, so the simple protocol may carry several
        // statements; the last one names the backend, to cancel it by.
        let begin = format!("{}; SELECT pg_backend_pid()", self.begin(limits, access.role));
        let rows = sqlx::raw_sql(AssertSqlSafe(begin)).fetch_all(lease.conn()).await.map_err(db_error)?;
        lease.pid = rows.last().and_then(|r| r.try_get::<i32, _>(0).ok());
        let (result, ending) =
            tokio::time::timeout(limits.timeout + CLIENT_GRACE, run(lease.conn(), sql, params, limits))
                .await
                .unwrap_or((Err(SqlError::Timeout { seconds: 0.0 }), Ending::Abandoned));
        // A statement stopped at the row limit or the deadline may still be
        // running: it is cancelled and its connection closed (the lease's
        // drop).
        match ending {
            Ending::Clean => lease.release().await,
            // Without a backend to cancel, the drop only closes it.
            Ending::Close => {
                lease.pid = None;
                drop(lease);
            }
            Ending::Abandoned => drop(lease),
        }
        result
    }
}

/// How a statement left its session.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// Ran to its end or refused: the session is in a known state and goes
    /// back to the pool (after the reset).
    Clean,
    /// Refused at the start of a COPY: nothing runs, but sqlx 0.9 leaves the
    /// server's ReadyForQuery unread (it would answer the next query), so
    /// the session is closed.
    Close,
    /// Stopped mid-way (a limit, a value its column cannot hold): it may
    /// still run, so it is cancelled, then its session closed.
    Abandoned,
}

/// Run the checked statement, and say how it left the session.
async fn run(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    params: &[Param],
    limits: FetchLimits,
) -> (Result<Rows, SqlError>, Ending) {
    // A statement cached by an earlier request on this session would keep
    // that request's parameter types, and its column types from before any
    // change to the tables: each request has PostgreSQL parse its statement
    // afresh (which also holds its tables' definitions until the end of the
    // transaction, so the COPY below reads the columns described here).
    if let Err(e) = conn.clear_cached_statements().await {
        return (Err(db_error(e)), Ending::Close);
    }
    // The text passed the AST check and runs read-only; values are bound.
    // Prepared with the types the values are bound as, so that the query
    // below finds this statement in the session's cache as it is.
    let types = param_types(params);
    let stmt = match conn.prepare_with(AssertSqlSafe(sql.to_string()).into_sql_str(), &types).await {
        Ok(stmt) => stmt,
        Err(e) => return (Err(db_error(e)), Ending::Clean),
    };
    let typed = check_param_count(stmt.parameters(), params).and_then(|()| {
        typed_columns(stmt.columns(), |c| PgType::of(c.type_info().name()), |n| format!("`{n}::text`"))
    });
    let (columns, types) = match typed {
        Ok(t) => t,
        Err(e) => return (Err(e), Ending::Clean),
    };
    let table = Table::new(columns, limits);
    if params.is_empty() && types.iter().all(|t| t.is_raw()) {
        // PostgreSQL parsed `sql` as one statement just now: COPY around it.
        let stream = match conn.copy_out_raw(&copy_statement(sql)).await {
            Ok(stream) => stream,
            Err(e) => return (Err(db_error(e)), Ending::Close),
        };
        let result = postgres_copy::read(stream, table, &types).await;
        // Only a stream read to its end (or ended by the server's error,
        // which sqlx reads through ReadyForQuery) is over.
        let ending = match &result {
            Ok(_) | Err(SqlError::Database { .. } | SqlError::Timeout { .. }) => Ending::Clean,
            Err(_) => Ending::Abandoned,
        };
        return (result, ending);
    }
    let query = bind_params::<_, String>(sqlx::query(AssertSqlSafe(sql.to_string())), params);
    let result = collect_rows(query.fetch(&mut *conn), table, &types, db_error, push_cell).await;
    let ending = match &result {
        Ok(_) | Err(SqlError::Database { .. }) => Ending::Clean,
        Err(_) => Ending::Abandoned,
    };
    (result, ending)
}

/// The types `bind_params` sends each value as (a NULL as text).
fn param_types(params: &[Param]) -> Vec<sqlx::postgres::PgTypeInfo> {
    use sqlx::Type;
    params
        .iter()
        .map(|p| match p {
            Param::Null | Param::Text(_) => <String as Type<Postgres>>::type_info(),
            Param::Bool(_) => <bool as Type<Postgres>>::type_info(),
            Param::Int(_) => <i64 as Type<Postgres>>::type_info(),
            Param::Float(_) => <f64 as Type<Postgres>>::type_info(),
        })
        .collect()
}

fn acquire_error(e: sqlx::Error) -> SqlError {
    match e {
        sqlx::Error::PoolTimedOut => SqlError::Unavailable {
            message: format!("no database connection became free within {} s", ACQUIRE_TIMEOUT.as_secs()),
        },
        other => SqlError::Unavailable { message: format!("the database cannot be reached: {other}") },
    }
}

pub(super) fn db_error(e: sqlx::Error) -> SqlError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("57014") => {
            SqlError::Timeout { seconds: 0.0 }
        }
        sqlx::Error::Database(d) => SqlError::Database { message: d.message().to_string() },
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut => {
            SqlError::Unavailable { message: format!("the database connection failed: {e}") }
        }
        other => SqlError::Database { message: other.to_string() },
    }
}

impl super::Backend for PgSource {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn rules(&self) -> &NameRules {
        &self.rules
    }

    fn describe(&self) -> String {
        redact(&self.url)
    }

    fn ping(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { sqlx::query("SELECT 1").execute(&self.pool).await.is_ok() })
    }

    fn fetch<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param],
        access: Access<'a>,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Rows, SqlError>> {
        Box::pin(PgSource::fetch(self, sql, params, access, limits))
    }

    fn schema(&self) -> BoxFuture<'_, Result<Vec<SchemaColumn>, SqlError>> {
        Box::pin(PgSource::schema(self))
    }

    fn catalog(&self) -> BoxFuture<'_, std::sync::Arc<Catalog>> {
        Box::pin(self.catalog.get(|| self.load_catalog()))
    }

    fn writable_tables(&self) -> BoxFuture<'_, Result<Vec<String>, SqlError>> {
        Box::pin(PgSource::writable_tables(self))
    }

    fn role_switch(&self) -> &'static str {
        "SET LOCAL ROLE inside a READ ONLY transaction"
    }

    fn role_problems<'a>(
        &'a self,
        role: &'a str,
        tables: &'a TableAllow,
    ) -> BoxFuture<'a, Result<Vec<String>, SqlError>> {
        Box::pin(PgSource::role_problems(self, role, tables))
    }
}
