//! MySQL and MariaDB: every query runs on a connection of its own (closed
//! afterwards, so no session state — user variables, roles, locks — reaches
//! the next request), inside `START TRANSACTION READ ONLY` through the
//! prepared-statement protocol (one statement, no stacking), with a
//! statement time limit (MySQL `max_execution_time` in ms, MariaDB
//! `max_statement_time` in s) and a client-side deadline that kills the
//! query. Where the policy names one, the connection first switches to the
//! policy's role (`SET ROLE`), so the server's grants enforce the table
//! allow-list. A read-only transaction does not stop DDL on MariaDB: the
//! role (or a read-only login) is what does.

use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Column as _, Executor, Row, SqlSafeStr, Statement, TypeInfo as _};

use futures_util::future::BoxFuture;

use super::encode::Table;
use super::mysql_types::{MyType, push_cell, text_twin};
use super::{
    Access, Catalog, CatalogCache, Dialect, FetchLimits, NameRules, Param, Rows, SchemaColumn, SqlError,
    bind_params, cancel_then_close, check_param_count, collect_rows, redact, schema_columns, typed_columns,
    unreadable,
};
use crate::policy::TableAllow;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Past the statement limit by this much, the client kills the query.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

pub struct MySqlSource {
    pool: MySqlPool,
    url: String,
    mariadb: bool,
    rules: NameRules,
    pub(super) catalog: CatalogCache,
    /// Probed once: the server's built-ins do not change while it runs.
    missing_builtins: tokio::sync::OnceCell<Vec<String>>,
}

impl MySqlSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        let url = url.replacen("mariadb:", "mysql:", 1);
        let connect_err = |e: sqlx::Error| SqlError::Connect { url: redact(&url), message: e.to_string() };
        let max = max_connections.max(1);
        // Connections are used once; the pool keeps fresh ones ready.
        let pool = MySqlPoolOptions::new()
            .max_connections(max)
            .min_connections(max.min(4))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&url)
            .await
            .map_err(connect_err)?;
        let row = sqlx::query("SELECT VERSION(), DATABASE(), @@lower_case_table_names")
            .fetch_one(&pool)
            .await
            .map_err(connect_err)?;
        let version: String = row.try_get(0).map_err(connect_err)?;
        let Some(database) = row.try_get::<Option<String>, _>(1).map_err(connect_err)? else {
            return Err(SqlError::Connect {
                url: redact(&url),
                message: "the URL names no database; use mysql://user@host/DATABASE".into(),
            });
        };
        let lower: i64 =
            row.try_get::<i64, _>(2).or_else(|_| row.try_get::<u64, _>(2).map(|v| v as i64)).unwrap_or(0);
        let rules =
            NameRules { dialect: Dialect::MySql, default_schema: database, case_sensitive: lower == 0 };
        Ok(Self {
            pool,
            url,
            mariadb: version.contains("MariaDB"),
            rules,
            catalog: Default::default(),
            missing_builtins: Default::default(),
        })
    }

    /// Privileges that allow writing, from SHOW GRANTS.
    pub async fn writable_tables(&self) -> Result<Vec<String>, SqlError> {
        let rows = sqlx::query("SHOW GRANTS").fetch_all(&self.pool).await.map_err(db_error)?;
        let writes = ["ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "FILE"];
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter(|g| writes.iter().any(|w| g.to_uppercase().contains(w)))
            .collect())
    }

    pub async fn schema(&self) -> Result<Vec<SchemaColumn>, SqlError> {
        let rows = sqlx::query(
            "SELECT CAST(table_schema AS CHAR) AS s, CAST(table_name AS CHAR) AS t, CAST(column_name AS CHAR) AS c, \
             CAST(column_type AS CHAR) AS d FROM information_schema.columns WHERE table_schema = DATABASE() \
             ORDER BY table_name, ordinal_position",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(schema_columns(&rows))
    }

    /// Allowed names whose unqualified call would not reach a built-in:
    /// those this server has no built-in for (probed once), and the stored
    /// functions of the default database that the login can see (read
    /// again with the catalogue; MariaDB prepares a call of a stored
    /// function without complaint, so only the list tells).
    pub(super) async fn load_catalog(&self) -> Result<Catalog, SqlError> {
        let missing = self.missing_builtins.get_or_try_init(|| self.probe_builtins()).await?;
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(routine_name AS CHAR) FROM information_schema.routines \
             WHERE routine_schema = DATABASE() AND routine_type = 'FUNCTION'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut catalog = Catalog::default();
        for name in missing.iter().chain(&stored) {
            catalog.add_shadowed(name);
        }
        Ok(catalog)
    }

    /// Preparing `SELECT name()` tells whether the server has a built-in of
    /// that name: a built-in answers with a syntax or argument-count error,
    /// a missing one with "FUNCTION … does not exist" (1305, 1630), a
    /// stored one (where prepare checks) with its argument count (1318) or a
    /// denied EXECUTE (1370).
    async fn probe_builtins(&self) -> Result<Vec<String>, SqlError> {
        let mut conn =
            self.pool.acquire().await.map_err(|e| SqlError::Unavailable { message: e.to_string() })?;
        conn.close_on_drop();
        let mut missing = Vec::new();
        for name in super::allow::functions(Dialect::MySql) {
            if let Err(e) = conn.prepare(AssertSqlSafe(format!("SELECT {name}()")).into_sql_str()).await
                && d_code_is(&e, &["1305", "1318", "1370", "1630"])
            {
                missing.push(name.to_string());
            }
        }
        Ok(missing)
    }

    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Param],
        access: Access<'_>,
        limits: FetchLimits,
    ) -> Result<Rows, SqlError> {
        let conn = self.pool.acquire().await.map_err(|e| SqlError::Unavailable {
            message: format!("no database connection became free or the database cannot be reached: {e}"),
        })?;
        // Whatever happens, this session ends with the request.
        let mut session = Session { conn: Some(conn), pool: self.pool.clone(), id: None, done: false };
        let conn = session.conn.as_mut().expect("held");
        if let Some(role) = access.role {
            conn.execute(AssertSqlSafe(format!("SET ROLE {}", self.rules.quote(role))))
                .await
                .map_err(db_error)?;
        }
        let limit = if self.mariadb {
            format!("SET SESSION max_statement_time = {}", limits.timeout.as_secs_f64())
        } else {
            format!("SET SESSION max_execution_time = {}", limits.timeout.as_millis().max(1))
        };
        conn.execute(AssertSqlSafe(limit)).await.map_err(db_error)?;
        let id: u64 =
            sqlx::query_scalar("SELECT CONNECTION_ID()").fetch_one(&mut **conn).await.map_err(db_error)?;
        session.id = Some(id);
        let conn = session.conn.as_mut().expect("held");
        conn.execute("START TRANSACTION READ ONLY").await.map_err(db_error)?;
        // Past the deadline, the server did not stop it (MariaDB lets some
        // work past max_statement_time): the session's drop kills it.
        let result = tokio::time::timeout(limits.timeout + CLIENT_GRACE, run(conn, sql, params, limits))
            .await
            .unwrap_or(Err(SqlError::Timeout { seconds: 0.0 }));
        // A statement that ran to its end, or that the server refused,
        // runs no more.
        session.done = matches!(result, Ok(_) | Err(SqlError::Database { .. }));
        result
    }

    /// Everything wrong with `role` (together with the login's own grants)
    /// for a policy allowing `tables`.
    pub(crate) async fn role_problems(
        &self,
        role: &str,
        tables: &TableAllow,
    ) -> Result<Vec<String>, SqlError> {
        let mut conn =
            self.pool.acquire().await.map_err(|e| SqlError::Unavailable { message: e.to_string() })?;
        conn.close_on_drop();
        if let Err(e) = conn.execute(AssertSqlSafe(format!("SET ROLE {}", self.rules.quote(role)))).await {
            return Ok(vec![format!(
                "the login user cannot switch to it ({}); CREATE ROLE it and GRANT it TO the login user",
                db_error(e)
            )]);
        }
        let mut problems = Vec::new();
        let grants: Vec<String> = sqlx::query("SHOW GRANTS")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .collect();
        for g in &grants {
            if let Some(p) = grant_problem(g, &self.rules, tables) {
                problems.push(p);
            }
        }
        let visible = sqlx::query(
            "SELECT CAST(table_schema AS CHAR) AS s, CAST(table_name AS CHAR) AS t FROM information_schema.tables \
             WHERE table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let mut readable = Vec::new();
        let mut extra = Vec::new();
        for row in &visible {
            let (s, t): (String, String) =
                (row.try_get("s").map_err(db_error)?, row.try_get("t").map_err(db_error)?);
            let r = self.rules.stored(&s, &t);
            if !self.rules.allows(tables, &r) {
                extra.push(format!("{s}.{t}"));
            }
            readable.push(r);
        }
        if !extra.is_empty() {
            problems.push(format!("it can see {}, which the policy does not allow", extra.join(", ")));
        }
        problems.extend(unreadable(&self.rules, tables, &readable));
        Ok(problems)
    }
}

/// What is wrong with one line of SHOW GRANTS, if anything: only USAGE, and
/// SELECT on single tables the policy allows, are acceptable (role
/// memberships and default roles are not privileges).
fn grant_problem(line: &str, rules: &NameRules, tables: &TableAllow) -> Option<String> {
    let upper = line.to_ascii_uppercase();
    if upper.starts_with("SET DEFAULT ROLE") || !upper.contains(" ON ") {
        return None;
    }
    if upper.contains("WITH GRANT OPTION") {
        return Some(format!("`{line}` lets it grant privileges"));
    }
    let privs = upper.strip_prefix("GRANT ")?.split(" ON ").next()?.trim().to_string();
    if privs == "USAGE" {
        return None;
    }
    let only_select = privs == "SELECT" || (privs.starts_with("SELECT (") && !privs.contains("),"));
    let object = line[line.to_ascii_uppercase().find(" ON ")? + 4..].split(" TO ").next()?.trim();
    let parts: Vec<String> = object.split('.').map(|p| p.trim_matches('`').replace("``", "`")).collect();
    let allowed_table = match parts.as_slice() {
        [db, table] if db != "*" && table != "*" => rules.allows(tables, &rules.stored(db, table)),
        [db, table] if db == &rules.default_schema && table == "*" => matches!(tables, TableAllow::All),
        _ => false,
    };
    if only_select && allowed_table {
        None
    } else {
        Some(format!("`{line}` grants more than SELECT on the allowed tables"))
    }
}

async fn run(
    conn: &mut sqlx::MySqlConnection,
    sql: &str,
    params: &[Param],
    limits: FetchLimits,
) -> Result<Rows, SqlError> {
    let stmt = conn.prepare(AssertSqlSafe(sql.to_string()).into_sql_str()).await.map_err(db_error)?;
    check_param_count(stmt.parameters(), params)?;
    let (columns, types) = typed_columns(
        stmt.columns(),
        |c| {
            let name = c.type_info().name();
            // The protocol flags a text column of a `_bin` collation
            // (MariaDB's JSON is LONGTEXT COLLATE utf8mb4_bin) as binary;
            // only the `binary` collation makes bytes.
            match text_twin(name) {
                Some(text) if <String as sqlx::Type<sqlx::MySql>>::compatible(c.type_info()) => {
                    MyType::of(text)
                }
                _ => MyType::of(name),
            }
        },
        |n| format!("CAST({n} AS CHAR)"),
    )?;
    let query = bind_params::<_, String>(sqlx::query(AssertSqlSafe(sql.to_string())), params);
    collect_rows(query.fetch(&mut *conn), Table::new(columns, limits), &types, db_error, push_cell).await
}

/// One request's session, closed (never pooled again) when it ends. Ended
/// before its statement did (the row limit, a deadline, a stop's kill), it
/// first has the server `KILL QUERY` from another session, so the work
/// stops now; only then is it closed, so its id cannot have been reused.
struct Session {
    conn: Option<sqlx::pool::PoolConnection<sqlx::MySql>>,
    pool: MySqlPool,
    id: Option<u64>,
    done: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let (false, Some(id)) = (self.done, self.id) else {
            conn.close_on_drop();
            return;
        };
        let what = format!("the abandoned statement of connection {id}");
        cancel_then_close(conn, self.pool.connect_options(), what, move |mut other| {
            Box::pin(async move {
                other.execute(AssertSqlSafe(format!("KILL QUERY {id}"))).await?;
                Ok(other)
            })
        });
    }
}

pub(super) fn db_error(e: sqlx::Error) -> SqlError {
    match &e {
        // MySQL 3024 (max_execution_time), MariaDB 1969 (max_statement_time).
        sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("HY000")) && d.message().contains("execution time")
                || d_code_is(&e, &["3024", "1969"]) =>
        {
            SqlError::Timeout { seconds: 0.0 }
        }
        sqlx::Error::Database(d) => SqlError::Database { message: d.message().to_string() },
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut => {
            SqlError::Unavailable { message: format!("the database connection failed: {e}") }
        }
        other => SqlError::Database { message: other.to_string() },
    }
}

fn d_code_is(e: &sqlx::Error, codes: &[&str]) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|m| codes.contains(&m.number().to_string().as_str())),
        _ => false,
    }
}

impl super::Backend for MySqlSource {
    fn dialect(&self) -> Dialect {
        Dialect::MySql
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
        Box::pin(MySqlSource::fetch(self, sql, params, access, limits))
    }

    fn schema(&self) -> BoxFuture<'_, Result<Vec<SchemaColumn>, SqlError>> {
        Box::pin(MySqlSource::schema(self))
    }

    fn catalog(&self) -> BoxFuture<'_, std::sync::Arc<Catalog>> {
        Box::pin(self.catalog.get(|| self.load_catalog()))
    }

    fn writable_tables(&self) -> BoxFuture<'_, Result<Vec<String>, SqlError>> {
        Box::pin(MySqlSource::writable_tables(self))
    }

    fn role_switch(&self) -> &'static str {
        "SET ROLE on a connection of its own"
    }

    fn role_problems<'a>(
        &'a self,
        role: &'a str,
        tables: &'a TableAllow,
    ) -> BoxFuture<'a, Result<Vec<String>, SqlError>> {
        Box::pin(MySqlSource::role_problems(self, role, tables))
    }
}
