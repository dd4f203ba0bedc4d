//! MySQL/MariaDB column types: which kind each is, and reading a cell of it.

use sqlx::mysql::MySqlRow;
use sqlx::{Row, ValueRef};

use super::SqlError;
use super::encode::{Column, Kind};
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

/// A MySQL/MariaDB type sluice reads, resolved once per column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum MyType {
    Boolean,
    TinyInt,
    SmallInt,
    /// MEDIUMINT and INT.
    Int,
    BigInt,
    Year,
    UTinyInt,
    USmallInt,
    /// MEDIUMINT UNSIGNED and INT UNSIGNED.
    UInt,
    UBigInt,
    Float,
    Double,
    Decimal,
    Json,
    Date,
    DateTime,
    Timestamp,
    Time,
    Bytes,
    Text,
}

impl MyType {
    pub(super) fn of(t: &str) -> Option<(Kind, Self)> {
        use MyType::*;
        Some(match t {
            "BOOLEAN" => (Kind::Boolean, Boolean),
            "TINYINT" => (Kind::Integer, TinyInt),
            "SMALLINT" => (Kind::Integer, SmallInt),
            "MEDIUMINT" | "INT" => (Kind::Integer, Int),
            "BIGINT" => (Kind::Integer, BigInt),
            "YEAR" => (Kind::Integer, Year),
            "TINYINT UNSIGNED" => (Kind::Integer, UTinyInt),
            "SMALLINT UNSIGNED" => (Kind::Integer, USmallInt),
            "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => (Kind::Integer, UInt),
            "BIGINT UNSIGNED" => (Kind::UInteger, UBigInt),
            "FLOAT" => (Kind::Float, Float),
            "DOUBLE" => (Kind::Float, Double),
            "DECIMAL" => (Kind::Decimal, Decimal),
            "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET"
            | "NULL" => (Kind::Text, Text),
            "TIME" => (Kind::Text, Time),
            "JSON" => (Kind::Json, Json),
            "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" | "BIT" | "GEOMETRY" => {
                (Kind::Bytes, Bytes)
            }
            "DATE" => (Kind::Date, Date),
            "DATETIME" => (Kind::Timestamp, DateTime),
            "TIMESTAMP" => (Kind::TimestampTz, Timestamp),
            _ => return None,
        })
    }
}

/// One value of a row, pushed into its column. The column's type was
/// checked once (`MyType::of`), so values decode without checking it again.
pub(super) fn push_cell(row: &MySqlRow, i: usize, t: MyType, col: &mut Column) -> Result<(), SqlError> {
    if row.try_get_raw(i).map_err(db_error)?.is_null() {
        col.null();
        return Ok(());
    }
    let e = db_error;
    use MyType::*;
    match t {
        Boolean => col.bool(row.try_get_unchecked(i).map_err(e)?),
        TinyInt => col.int(row.try_get_unchecked::<i8, _>(i).map_err(e)? as i64),
        SmallInt => col.int(row.try_get_unchecked::<i16, _>(i).map_err(e)? as i64),
        Int => col.int(row.try_get_unchecked::<i32, _>(i).map_err(e)? as i64),
        BigInt => col.int(row.try_get_unchecked(i).map_err(e)?),
        Year => col.int(row.try_get_unchecked::<u16, _>(i).map_err(e)? as i64),
        UTinyInt => col.int(row.try_get_unchecked::<u8, _>(i).map_err(e)? as i64),
        USmallInt => col.int(row.try_get_unchecked::<u16, _>(i).map_err(e)? as i64),
        UInt => col.int(row.try_get_unchecked::<u32, _>(i).map_err(e)? as i64),
        UBigInt => col.uint(row.try_get_unchecked(i).map_err(e)?),
        Float => col.float(row.try_get_unchecked::<f32, _>(i).map_err(e)? as f64),
        Double => col.float(row.try_get_unchecked(i).map_err(e)?),
        Decimal => col.text(&row.try_get::<sqlx::types::BigDecimal, _>(i).map_err(e)?.to_string()),
        Json => col.text(&row.try_get::<serde_json::Value, _>(i).map_err(e)?.to_string()),
        Date => col.date(days(row.try_get::<time::Date, _>(i).map_err(e)?)),
        DateTime => {
            col.timestamp(micros(row.try_get::<time::PrimitiveDateTime, _>(i).map_err(e)?.assume_utc()))
        }
        Timestamp => col.timestamp(micros(row.try_get::<time::OffsetDateTime, _>(i).map_err(e)?)),
        Time => col.text(&time_text(row, i)?),
        Bytes => col.bytes(row.try_get_unchecked::<&[u8], _>(i).map_err(e)?),
        Text => col.text(row.try_get_unchecked::<&str, _>(i).map_err(e)?),
    }
    Ok(())
}

/// MySQL TIME as text: a time of day, or a duration past a day (±838 h).
fn time_text(row: &MySqlRow, i: usize) -> Result<String, SqlError> {
    let e = db_error;
    Ok(match row.try_get::<time::Time, _>(i) {
        Ok(t) => {
            format!("{:02}:{:02}:{:02}.{:06}", t.hour(), t.minute(), t.second(), micros_of_day(t) % 1_000_000)
        }
        Err(_) => {
            let t = row.try_get::<sqlx::mysql::types::MySqlTime, _>(i).map_err(e)?;
            // sqlx 0.9.0 MySqlTime::is_negative returns the sign's is_positive (a
            // bug there), so ask the sign itself.
            let sign = if matches!(t.sign(), sqlx::mysql::types::MySqlTimeSign::Negative) { "-" } else { "" };
            format!("{sign}{:02}:{:02}:{:02}.{:06}", t.hours(), t.minutes(), t.seconds(), t.microseconds())
        }
    })
}
