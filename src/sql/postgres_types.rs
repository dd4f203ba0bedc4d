//! PostgreSQL values → Arrow-ready cells, by column type (and the date and
//! time conversions MySQL shares).

use sqlx::postgres::PgRow;
use sqlx::postgres::types::PgInterval;
use sqlx::{Row, ValueRef};

use super::SqlError;
use super::encode::{Cell, Kind};
use super::postgres::db_error;

/// sluice's kind for a PostgreSQL type name (as sqlx names them).
pub(super) fn kind_of(t: &str) -> Option<Kind> {
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

pub(super) fn cell(row: &PgRow, i: usize, t: &str) -> Result<Cell, SqlError> {
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
