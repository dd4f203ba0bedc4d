//! SQLite: opened read-only (`SQLITE_OPEN_READONLY`, `PRAGMA query_only`),
//! with the statement timeout enforced by SQLite's progress handler, which
//! interrupts the running statement from inside the VM.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Column, Executor, Row, SqlSafeStr, Statement, TypeInfo, ValueRef};

use super::encode::{Cell, ColumnData};
use super::{FetchLimits, Param, Rows, SqlError, bind_params, collect_rows, schema_triples};

pub struct SqliteSource {
    pool: SqlitePool,
    url: String,
}

impl SqliteSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        let connect_err = |e: sqlx::Error| SqlError::Connect { url: url.into(), message: e.to_string() };
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(connect_err)?
            .read_only(true)
            .create_if_missing(false)
            .pragma("query_only", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(opts)
            .await
            .map_err(connect_err)?;
        Ok(Self { pool, url: url.into() })
    }

    pub fn describe(&self) -> String {
        self.url.clone()
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// (table, column, declared type) of every table.
    pub async fn schema(&self) -> Result<Vec<(String, String, String)>, SqlError> {
        let rows = sqlx::query(
            "SELECT m.name AS t, p.name AS c, p.type AS d FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(schema_triples(&rows))
    }

    pub async fn fetch(&self, sql: &str, params: &[Param], limits: FetchLimits) -> Result<Rows, SqlError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let deadline = Instant::now() + limits.timeout;
        let timed_out = Arc::new(AtomicBool::new(false));
        {
            let flag = timed_out.clone();
            let mut handle = conn.lock_handle().await.map_err(db_error)?;
            // Called every ~1000 VM instructions; returning false interrupts.
            handle.set_progress_handler(1000, move || {
                if Instant::now() >= deadline {
                    flag.store(true, Ordering::Relaxed);
                    false
                } else {
                    true
                }
            });
        }
        let result = run(&mut conn, sql, params, limits).await;
        if let Ok(mut handle) = conn.lock_handle().await {
            handle.remove_progress_handler();
        }
        match result {
            Err(_) if timed_out.load(Ordering::Relaxed) => {
                Err(SqlError::Timeout { seconds: limits.timeout.as_secs_f64() })
            }
            other => other,
        }
    }
}

async fn run(
    conn: &mut sqlx::SqliteConnection,
    sql: &str,
    params: &[Param],
    limits: FetchLimits,
) -> Result<Rows, SqlError> {
    // Preparing first gives the column names and declared types even when
    // no row comes back.
    // The text is the caller's by design: it passed the AST check, runs on
    // a read-only connection, and values travel as bind parameters.
    let stmt = conn.prepare(AssertSqlSafe(sql.to_string()).into_sql_str()).await.map_err(db_error)?;
    let columns: Vec<ColumnData> = stmt
        .columns()
        .iter()
        .map(|c| ColumnData {
            name: c.name().to_string(),
            declared: c.type_info().name().to_string(),
            cells: Vec::new(),
            kind: None,
        })
        .collect();

    let query = bind_params::<_, i64>(sqlx::query(AssertSqlSafe(sql.to_string())), params);
    collect_rows(query.fetch(&mut *conn), columns, limits, db_error, cell).await
}

/// One value by its own storage class (SQLite types values, not columns).
fn cell(row: &SqliteRow, i: usize, _declared: &str) -> Result<Cell, SqlError> {
    let raw = row.try_get_raw(i).map_err(db_error)?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    Ok(match raw.type_info().name() {
        "INTEGER" | "BOOLEAN" => Cell::Int(row.try_get_unchecked::<i64, _>(i).map_err(db_error)?),
        "REAL" => Cell::Real(row.try_get_unchecked::<f64, _>(i).map_err(db_error)?),
        "BLOB" => Cell::Blob(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(db_error)?),
        _ => Cell::Text(row.try_get_unchecked::<String, _>(i).map_err(db_error)?),
    })
}

fn db_error(e: sqlx::Error) -> SqlError {
    let message = match &e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    };
    SqlError::Database { message }
}
