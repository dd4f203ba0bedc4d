//! MySQL/MariaDB column types: which kind each is, and reading a cell of it.

use sqlx::mysql::MySqlRow;
use sqlx::{Row, ValueRef};

use super::SqlError;
use super::encode::{Cell, Kind};
use super::mysql::db_error;
use super::postgres_types::{days, micros, micros_of_day};

/// The text type of the same storage as a binary string type.
pub(super) fn text_twin(t: &str) -> Option<&'static str> {
    Some(match t {
        "BLOB" => "TEXT",
        "TINYBLOB" => "TINYTEXT",
        "MEDIUMBLOB" => "MEDIUMTEXT",
        "LONGBLOB" => "LONGTEXT",
        "BINARY" => "CHAR",
        "VARBINARY" => "VARCHAR",
        _ => return None,
    })
}

pub(super) fn kind_of(t: &str) -> Option<Kind> {
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

pub(super) fn cell(row: &MySqlRow, i: usize, t: &str) -> Result<Cell, SqlError> {
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
