//! PostgreSQL: every query runs inside `BEGIN READ ONLY` with
//! `SET LOCAL statement_timeout`, through the extended (prepared) protocol,
//! which carries exactly one statement; the transaction is always rolled
//! back. Values are decoded per column type into Arrow-ready cells.

use std::time::Duration;

use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Executor, Row, SqlSafeStr, Statement, ValueRef};

use super::encode::{Cell, Kind};
use super::{
    FetchLimits, Param, Rows, SqlError, bind_params, collect_rows, redact, schema_triples, typed_columns,
};

pub struct PgSource {
    pool: PgPool,
    url: String,
}

/// Waiting longer than this for a pooled connection answers 503, not a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl PgSource {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SqlError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| SqlError::Connect { url: redact(url), message: e.to_string() })?;
        Ok(Self { pool, url: url.into() })
    }

    pub fn describe(&self) -> String {
        redact(&self.url)
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
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
    pub async fn schema(&self) -> Result<Vec<(String, String, String)>, SqlError> {
        let rows = sqlx::query(
            "SELECT CASE WHEN table_schema = 'public' THEN table_name ELSE table_schema || '.' || table_name END AS t, \
             column_name AS c, data_type AS d FROM information_schema.columns \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY table_schema, table_name, ordinal_position",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(schema_triples(&rows))
    }

    pub async fn fetch(&self, sql: &str, params: &[Param], limits: FetchLimits) -> Result<Rows, SqlError> {
        let mut conn = self.pool.acquire().await.map_err(acquire_error)?;
        conn.execute("BEGIN READ ONLY").await.map_err(db_error)?;
        let ms = limits.timeout.as_millis().max(1);
        let result = async {
            sqlx::query(AssertSqlSafe(format!("SET LOCAL statement_timeout = {ms}")))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            run(&mut conn, sql, params, limits).await
        }
        .await;
        // Nothing a query did survives it, whatever it was.
        let _ = conn.execute("ROLLBACK").await;
        result
    }
}

async fn run(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    params: &[Param],
    limits: FetchLimits,
) -> Result<Rows, SqlError> {
    // The text passed the AST check and runs read-only; values are bound.
    let stmt = conn.prepare(AssertSqlSafe(sql.to_string()).into_sql_str()).await.map_err(db_error)?;
    let columns = typed_columns(stmt.columns(), kind_of, |n| format!("`{n}::text`"))?;
    let query = bind_params::<_, String>(sqlx::query(AssertSqlSafe(sql.to_string())), params);
    collect_rows(query.fetch(&mut *conn), columns, limits, db_error, cell).await
}

/// sluice's kind for a PostgreSQL type name (as sqlx names them).
fn kind_of(t: &str) -> Option<Kind> {
    Some(match t {
        "BOOL" => Kind::Boolean,
        "INT2" | "INT4" | "INT8" | "OID" => Kind::Integer,
        "FLOAT4" | "FLOAT8" => Kind::Float,
        "NUMERIC" => Kind::Decimal,
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" | "TIMETZ" => Kind::Text,
        "BYTEA" => Kind::Bytes,
        "DATE" => Kind::Date,
        "TIME" => Kind::Time,
        "TIMESTAMP" => Kind::Timestamp,
        "TIMESTAMPTZ" => Kind::TimestampTz,
        "JSON" | "JSONB" => Kind::Json,
        "UUID" => Kind::Uuid,
        "INTERVAL" => Kind::Interval,
        "BOOL[]" | "INT2[]" | "INT4[]" | "INT8[]" | "FLOAT4[]" | "FLOAT8[]" | "TEXT[]" | "VARCHAR[]"
        | "NUMERIC[]" => Kind::Array,
        _ => return None,
    })
}

fn cell(row: &PgRow, i: usize, t: &str) -> Result<Cell, SqlError> {
    if row.try_get_raw(i).map_err(db_error)?.is_null() {
        return Ok(Cell::Null);
    }
    let e = db_error;
    Ok(match t {
        "BOOL" => Cell::Bool(row.try_get(i).map_err(e)?),
        "INT2" => Cell::Int(row.try_get::<i16, _>(i).map_err(e)? as i64),
        "INT4" => Cell::Int(row.try_get::<i32, _>(i).map_err(e)? as i64),
        "INT8" => Cell::Int(row.try_get(i).map_err(e)?),
        "OID" => Cell::Int(row.try_get::<sqlx::postgres::types::Oid, _>(i).map_err(e)?.0 as i64),
        "FLOAT4" => Cell::Real(row.try_get::<f32, _>(i).map_err(e)? as f64),
        "FLOAT8" => Cell::Real(row.try_get(i).map_err(e)?),
        "NUMERIC" => Cell::Text(row.try_get::<sqlx::types::BigDecimal, _>(i).map_err(e)?.to_string()),
        "BYTEA" => Cell::Blob(row.try_get(i).map_err(e)?),
        "DATE" => Cell::Date(days(row.try_get::<time::Date, _>(i).map_err(e)?)),
        "TIME" => Cell::Time(micros_of_day(row.try_get::<time::Time, _>(i).map_err(e)?)),
        "TIMESTAMP" => {
            let t: time::PrimitiveDateTime = row.try_get(i).map_err(e)?;
            Cell::Timestamp(micros(t.assume_utc()))
        }
        "TIMESTAMPTZ" => Cell::Timestamp(micros(row.try_get::<time::OffsetDateTime, _>(i).map_err(e)?)),
        "JSON" | "JSONB" => Cell::Text(row.try_get::<serde_json::Value, _>(i).map_err(e)?.to_string()),
        "UUID" => Cell::Text(row.try_get::<uuid::Uuid, _>(i).map_err(e)?.to_string()),
        "INTERVAL" => Cell::Text(iso_interval(&row.try_get::<PgInterval, _>(i).map_err(e)?)),
        "TIMETZ" => Cell::Text(format!(
            "{:?}",
            row.try_get_unchecked::<sqlx::postgres::types::PgTimeTz, _>(i).map_err(e)?
        )),
        "BOOL[]" => json_array(row.try_get::<Vec<Option<bool>>, _>(i).map_err(e)?),
        "INT2[]" => json_array(row.try_get::<Vec<Option<i16>>, _>(i).map_err(e)?),
        "INT4[]" => json_array(row.try_get::<Vec<Option<i32>>, _>(i).map_err(e)?),
        "INT8[]" => json_array(row.try_get::<Vec<Option<i64>>, _>(i).map_err(e)?),
        "FLOAT4[]" => json_array(row.try_get::<Vec<Option<f32>>, _>(i).map_err(e)?),
        "FLOAT8[]" => json_array(row.try_get::<Vec<Option<f64>>, _>(i).map_err(e)?),
        "NUMERIC[]" => json_array(
            row.try_get::<Vec<Option<sqlx::types::BigDecimal>>, _>(i)
                .map_err(e)?
                .into_iter()
                .map(|d| d.map(|d| d.to_string()))
                .collect(),
        ),
        "TEXT[]" | "VARCHAR[]" => json_array(row.try_get::<Vec<Option<String>>, _>(i).map_err(e)?),
        _ => Cell::Text(row.try_get(i).map_err(e)?),
    })
}

fn json_array<T: serde::Serialize>(v: Vec<Option<T>>) -> Cell {
    Cell::Text(serde_json::to_string(&v).unwrap_or_default())
}

pub(super) fn days(d: time::Date) -> i32 {
    (d - time::Date::from_calendar_date(1970, time::Month::January, 1).expect("epoch")).whole_days() as i32
}

pub(super) fn micros_of_day(t: time::Time) -> i64 {
    let (h, m, s, us) = t.as_hms_micro();
    ((h as i64 * 60 + m as i64) * 60 + s as i64) * 1_000_000 + us as i64
}

pub(super) fn micros(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

/// ISO 8601 duration, e.g. `P1M2DT3H4M5.5S`.
fn iso_interval(i: &PgInterval) -> String {
    let mut s = String::from("P");
    if i.months != 0 {
        s += &format!("{}M", i.months);
    }
    if i.days != 0 {
        s += &format!("{}D", i.days);
    }
    if i.microseconds != 0 || s == "P" {
        let secs = i.microseconds as f64 / 1e6;
        s += &format!("T{secs}S");
    }
    s
}

fn acquire_error(e: sqlx::Error) -> SqlError {
    match e {
        sqlx::Error::PoolTimedOut => SqlError::Unavailable {
            message: format!("no database connection became free within {} s", ACQUIRE_TIMEOUT.as_secs()),
        },
        other => SqlError::Unavailable { message: format!("the database cannot be reached: {other}") },
    }
}

fn db_error(e: sqlx::Error) -> SqlError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_iso_8601() {
        assert_eq!(iso_interval(&PgInterval { months: 1, days: 2, microseconds: 3_500_000 }), "P1M2DT3.5S");
        assert_eq!(iso_interval(&PgInterval { months: 0, days: 0, microseconds: 0 }), "PT0S");
    }

    #[test]
    fn dates_and_times_count_from_the_epoch() {
        assert_eq!(days(time::macros::date!(1970 - 01 - 02)), 1);
        assert_eq!(micros_of_day(time::macros::time!(00:00:01.5)), 1_500_000);
    }
}
