//! MySQL and MariaDB: every query runs inside `START TRANSACTION READ ONLY`
//! through the prepared-statement protocol (one statement, no stacking),
//! with a statement time limit (MySQL `max_execution_time` in ms, MariaDB
//! `max_statement_time` in s); the transaction is always rolled back.
//! A read-only transaction does not stop DDL on MariaDB: the AST check is
//! what keeps DDL out, and a read-only database user is the third layer.

use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Executor, Row, SqlSafeStr, Statement, ValueRef};

use super::encode::{Cell, Kind};
use super::postgres::{days, micros, micros_of_day};
use super::{
    FetchLimits, Param, Rows, SqlError, bind_params, collect_rows, redact, schema_triples, typed_columns,
};

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct MySqlSource {
    pool: MySqlPool,
    url: String,
    mariadb: bool,
}

impl MySqlSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        let url = url.replacen("mariadb:", "mysql:", 1);
        let connect_err = |e: sqlx::Error| SqlError::Connect { url: redact(&url), message: e.to_string() };
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&url)
            .await
            .map_err(connect_err)?;
        let version: String =
            sqlx::query_scalar("SELECT VERSION()").fetch_one(&pool).await.map_err(connect_err)?;
        Ok(Self { pool, url, mariadb: version.contains("MariaDB") })
    }

    pub fn describe(&self) -> String {
        redact(&self.url)
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
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

    pub async fn schema(&self) -> Result<Vec<(String, String, String)>, SqlError> {
        let rows = sqlx::query(
            "SELECT CAST(table_name AS CHAR) AS t, CAST(column_name AS CHAR) AS c, CAST(column_type AS CHAR) AS d \
             FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(schema_triples(&rows))
    }

    pub async fn fetch(&self, sql: &str, params: &[Param], limits: FetchLimits) -> Result<Rows, SqlError> {
        let mut conn = self.pool.acquire().await.map_err(|e| SqlError::Unavailable {
            message: format!("no database connection became free or the database cannot be reached: {e}"),
        })?;
        let limit = if self.mariadb {
            format!("SET SESSION max_statement_time = {}", limits.timeout.as_secs_f64())
        } else {
            format!("SET SESSION max_execution_time = {}", limits.timeout.as_millis().max(1))
        };
        conn.execute(AssertSqlSafe(limit)).await.map_err(db_error)?;
        conn.execute("START TRANSACTION READ ONLY").await.map_err(db_error)?;
        let result = run(&mut conn, sql, params, limits).await;
        let _ = conn.execute("ROLLBACK").await;
        result
    }
}

async fn run(
    conn: &mut sqlx::MySqlConnection,
    sql: &str,
    params: &[Param],
    limits: FetchLimits,
) -> Result<Rows, SqlError> {
    let stmt = conn.prepare(AssertSqlSafe(sql.to_string()).into_sql_str()).await.map_err(db_error)?;
    let columns = typed_columns(stmt.columns(), kind_of, |n| format!("CAST({n} AS CHAR)"))?;
    let query = bind_params::<_, String>(sqlx::query(AssertSqlSafe(sql.to_string())), params);
    collect_rows(query.fetch(&mut *conn), columns, limits, db_error, cell).await
}

fn kind_of(t: &str) -> Option<Kind> {
    Some(match t {
        "BOOLEAN" => Kind::Boolean,
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" | "TINYINT UNSIGNED"
        | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => Kind::Integer,
        "BIGINT UNSIGNED" => Kind::UInteger,
        "FLOAT" | "DOUBLE" => Kind::Float,
        "DECIMAL" => Kind::Decimal,
        "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" | "TIME" => {
            Kind::Text
        }
        "JSON" => Kind::Json,
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" | "BIT" | "GEOMETRY" => {
            Kind::Bytes
        }
        "DATE" => Kind::Date,
        "DATETIME" => Kind::Timestamp,
        "TIMESTAMP" => Kind::TimestampTz,
        "NULL" => Kind::Text,
        _ => return None,
    })
}

fn cell(row: &MySqlRow, i: usize, t: &str) -> Result<Cell, SqlError> {
    if row.try_get_raw(i).map_err(db_error)?.is_null() {
        return Ok(Cell::Null);
    }
    let e = db_error;
    Ok(match t {
        "BOOLEAN" => Cell::Bool(row.try_get(i).map_err(e)?),
        "TINYINT" => Cell::Int(row.try_get::<i8, _>(i).map_err(e)? as i64),
        "SMALLINT" => Cell::Int(row.try_get::<i16, _>(i).map_err(e)? as i64),
        "MEDIUMINT" | "INT" => Cell::Int(row.try_get::<i32, _>(i).map_err(e)? as i64),
        "BIGINT" => Cell::Int(row.try_get(i).map_err(e)?),
        "YEAR" => Cell::Int(row.try_get::<u16, _>(i).map_err(e)? as i64),
        "TINYINT UNSIGNED" => Cell::Int(row.try_get::<u8, _>(i).map_err(e)? as i64),
        "SMALLINT UNSIGNED" => Cell::Int(row.try_get::<u16, _>(i).map_err(e)? as i64),
        "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => Cell::Int(row.try_get::<u32, _>(i).map_err(e)? as i64),
        "BIGINT UNSIGNED" => Cell::UInt(row.try_get(i).map_err(e)?),
        "FLOAT" => Cell::Real(row.try_get::<f32, _>(i).map_err(e)? as f64),
        "DOUBLE" => Cell::Real(row.try_get(i).map_err(e)?),
        "DECIMAL" => Cell::Text(row.try_get::<sqlx::types::BigDecimal, _>(i).map_err(e)?.to_string()),
        "JSON" => Cell::Text(row.try_get::<serde_json::Value, _>(i).map_err(e)?.to_string()),
        "DATE" => Cell::Date(days(row.try_get::<time::Date, _>(i).map_err(e)?)),
        "DATETIME" => {
            Cell::Timestamp(micros(row.try_get::<time::PrimitiveDateTime, _>(i).map_err(e)?.assume_utc()))
        }
        "TIMESTAMP" => Cell::Timestamp(micros(row.try_get::<time::OffsetDateTime, _>(i).map_err(e)?)),
        "TIME" => match row.try_get::<time::Time, _>(i) {
            Ok(t) => Cell::Text(format!(
                "{:02}:{:02}:{:02}.{:06}",
                t.hour(),
                t.minute(),
                t.second(),
                micros_of_day(t) % 1_000_000
            )),
            // Durations outside a day (MySQL TIME spans ±838 h).
            Err(_) => {
                let t = row.try_get::<sqlx::mysql::types::MySqlTime, _>(i).map_err(e)?;
                // sqlx 0.9.0 MySqlTime::is_negative returns the sign's is_positive (a
                // bug there), so ask the sign itself.
                let sign =
                    if matches!(t.sign(), sqlx::mysql::types::MySqlTimeSign::Negative) { "-" } else { "" };
                Cell::Text(format!(
                    "{sign}{:02}:{:02}:{:02}.{:06}",
                    t.hours(),
                    t.minutes(),
                    t.seconds(),
                    t.microseconds()
                ))
            }
        },
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" | "BIT" | "GEOMETRY" => {
            Cell::Blob(row.try_get(i).map_err(e)?)
        }
        _ => Cell::Text(row.try_get(i).map_err(e)?),
    })
}

fn db_error(e: sqlx::Error) -> SqlError {
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
