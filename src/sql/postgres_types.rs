//! PostgreSQL values → Arrow columns, by column type: each column's type is
//! resolved once (`PgType::of`), and each value decoded from PostgreSQL's
//! binary format straight into its column. The same decoder reads rows
//! and the binary COPY stream (`postgres_copy.rs`); JSON, intervals, time
//! with zone and arrays go through sqlx's decoders (rows only).

use std::fmt::Write as _;

use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{Row, ValueRef};

use super::SqlError;
use super::encode::{Column, Kind};
use super::postgres::db_error;

/// A PostgreSQL type sluice reads (as sqlx names them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    /// The one-byte internal `"char"`.
    Char,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    // Decoded by sqlx (rows only).
    Json,
    Interval,
    TimeTz,
    BoolArray,
    Int2Array,
    Int4Array,
    Int8Array,
    Float4Array,
    Float8Array,
    NumericArray,
    TextArray,
}

impl PgType {
    pub(super) fn of(name: &str) -> Option<(Kind, Self)> {
        use PgType::*;
        let t = match name {
            "BOOL" => Bool,
            "INT2" => Int2,
            "INT4" => Int4,
            "INT8" => Int8,
            "OID" => Oid,
            "FLOAT4" => Float4,
            "FLOAT8" => Float8,
            "NUMERIC" => Numeric,
            // sqlx names `bpchar` CHAR and the internal one-byte type "CHAR".
            "TEXT" | "VARCHAR" | "BPCHAR" | "CHAR" | "NAME" | "CITEXT" => Text,
            "\"CHAR\"" => Char,
            "BYTEA" => Bytea,
            "DATE" => Date,
            "TIME" => Time,
            "TIMESTAMP" => Timestamp,
            "TIMESTAMPTZ" => TimestampTz,
            "UUID" => Uuid,
            "JSON" | "JSONB" => Json,
            "INTERVAL" => Interval,
            "TIMETZ" => TimeTz,
            "BOOL[]" => BoolArray,
            "INT2[]" => Int2Array,
            "INT4[]" => Int4Array,
            "INT8[]" => Int8Array,
            "FLOAT4[]" => Float4Array,
            "FLOAT8[]" => Float8Array,
            "NUMERIC[]" => NumericArray,
            "TEXT[]" | "VARCHAR[]" => TextArray,
            _ => return None,
        };
        Some((t.kind(), t))
    }

    pub(super) fn kind(self) -> Kind {
        use PgType::*;
        match self {
            Bool => Kind::Boolean,
            Int2 | Int4 | Int8 | Oid => Kind::Integer,
            Float4 | Float8 => Kind::Float,
            Numeric => Kind::Decimal,
            Text | Char | TimeTz => Kind::Text,
            Bytea => Kind::Bytes,
            Date => Kind::Date,
            Time => Kind::Time,
            Timestamp => Kind::Timestamp,
            TimestampTz => Kind::TimestampTz,
            Uuid => Kind::Uuid,
            Json => Kind::Json,
            Interval => Kind::Interval,
            BoolArray | Int2Array | Int4Array | Int8Array | Float4Array | Float8Array | NumericArray
            | TextArray => Kind::Array,
        }
    }

    /// sluice decodes this type's binary format itself (so a query of only
    /// such columns can be read as a binary COPY stream).
    pub(super) fn is_raw(self) -> bool {
        use PgType::*;
        !matches!(
            self,
            Json | Interval
                | TimeTz
                | BoolArray
                | Int2Array
                | Int4Array
                | Int8Array
                | Float4Array
                | Float8Array
                | NumericArray
                | TextArray
        )
    }
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into().map_err(|_| format!("{} bytes where {N} were expected", b.len()))
}

/// One non-NULL value of a raw type, in PostgreSQL's binary format.
pub(super) fn push_raw(col: &mut Column, t: PgType, b: &[u8]) -> Result<(), String> {
    use PgType::*;
    match t {
        Bool => col.bool(be::<1>(b)?[0] != 0),
        Int2 => col.int(i16::from_be_bytes(be(b)?) as i64),
        Int4 => col.int(i32::from_be_bytes(be(b)?) as i64),
        Int8 => col.int(i64::from_be_bytes(be(b)?)),
        Oid => col.int(u32::from_be_bytes(be(b)?) as i64),
        Float4 => col.float(f32::from_be_bytes(be(b)?) as f64),
        Float8 => col.float(f64::from_be_bytes(be(b)?)),
        Numeric => col.text(&numeric_text(b)?),
        Text => col.text(std::str::from_utf8(b).map_err(|e| format!("text that is not UTF-8: {e}"))?),
        Char => col.text(&String::from_utf8_lossy(b)),
        Bytea => col.bytes(b),
        Date => {
            let d = i32::from_be_bytes(be(b)?);
            let days = d.checked_add(PG_EPOCH_DAYS).filter(|_| d != i32::MAX && d != i32::MIN);
            col.date(days.ok_or("the date is ±infinity, which has no date; cast it to text")?)
        }
        Time => {
            let us = i64::from_be_bytes(be(b)?);
            if !(0..MICROS_PER_DAY).contains(&us) {
                return Err("the time is 24:00:00, which has no time of day; cast it to text".into());
            }
            col.time(us)
        }
        Timestamp | TimestampTz => {
            let us = i64::from_be_bytes(be(b)?);
            let t = us.checked_add(PG_EPOCH_MICROS).filter(|_| us != i64::MAX && us != i64::MIN);
            col.timestamp(t.ok_or("the timestamp is ±infinity or out of range; cast it to text")?)
        }
        Uuid => {
            let mut buf = uuid::Uuid::encode_buffer();
            col.text(uuid::Uuid::from_bytes(be(b)?).hyphenated().encode_lower(&mut buf))
        }
        _ => return Err(format!("{t:?} is not decoded by sluice")),
    }
    Ok(())
}

/// A binary NUMERIC as PostgreSQL prints it: every digit of its scale.
fn numeric_text(b: &[u8]) -> Result<String, String> {
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    if b.len() < 8 {
        return Err("a NUMERIC shorter than its header".into());
    }
    let (n, weight, sign, dscale) =
        (u16_at(0) as usize, u16_at(2) as i16 as i64, u16_at(4), u16_at(6) as usize);
    if b.len() != 8 + 2 * n {
        return Err("a NUMERIC of the wrong length".into());
    }
    let digit = |d: i64| if d >= 0 && (d as usize) < n { u16_at(8 + 2 * d as usize) } else { 0 };
    let mut s = String::with_capacity(8 + 4 * n + dscale);
    match sign {
        0x0000 => {}
        0x4000 => s.push('-'),
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        other => return Err(format!("a NUMERIC with sign {other:#x}")),
    }
    if weight < 0 {
        s.push('0');
    } else {
        for d in 0..=weight {
            let _ = if d == 0 { write!(s, "{}", digit(d)) } else { write!(s, "{:04}", digit(d)) };
        }
    }
    if dscale > 0 {
        s.push('.');
        let (mut left, mut d) = (dscale, weight + 1);
        while left > 0 {
            let group = format!("{:04}", digit(d));
            let take = left.min(4);
            s.push_str(&group[..take]);
            left -= take;
            d += 1;
        }
    }
    Ok(s)
}

/// One value of a row (the extended protocol's binary format).
pub(super) fn push_cell(row: &PgRow, i: usize, t: PgType, col: &mut Column) -> Result<(), SqlError> {
    let raw = row.try_get_raw(i).map_err(db_error)?;
    if raw.is_null() {
        col.null();
        return Ok(());
    }
    if t.is_raw() && raw.format() == PgValueFormat::Binary {
        let bytes = raw.as_bytes().map_err(|e| SqlError::Database { message: e.to_string() })?;
        return push_raw(col, t, bytes).map_err(|e| value_error(col, &e));
    }
    let e = db_error;
    use PgType::*;
    match t {
        Json => col.text(&row.try_get::<serde_json::Value, _>(i).map_err(e)?.to_string()),
        Interval => col.text(&iso_interval(&row.try_get::<PgInterval, _>(i).map_err(e)?)),
        TimeTz => col.text(&format!(
            "{:?}",
            row.try_get_unchecked::<sqlx::postgres::types::PgTimeTz, _>(i).map_err(e)?
        )),
        BoolArray => json_array(col, row.try_get::<Vec<Option<bool>>, _>(i).map_err(e)?),
        Int2Array => json_array(col, row.try_get::<Vec<Option<i16>>, _>(i).map_err(e)?),
        Int4Array => json_array(col, row.try_get::<Vec<Option<i32>>, _>(i).map_err(e)?),
        Int8Array => json_array(col, row.try_get::<Vec<Option<i64>>, _>(i).map_err(e)?),
        Float4Array => json_array(col, row.try_get::<Vec<Option<f32>>, _>(i).map_err(e)?),
        Float8Array => json_array(col, row.try_get::<Vec<Option<f64>>, _>(i).map_err(e)?),
        NumericArray => json_array(
            col,
            row.try_get::<Vec<Option<sqlx::types::BigDecimal>>, _>(i)
                .map_err(e)?
                .into_iter()
                .map(|d| d.map(|d| d.to_string()))
                .collect(),
        ),
        TextArray => json_array(col, row.try_get::<Vec<Option<String>>, _>(i).map_err(e)?),
        // Raw types in text format (never sent so by sqlx): its own decoders.
        _ => col.text(row.try_get::<&str, _>(i).map_err(e)?),
    }
    Ok(())
}

/// A value the decoder refused, named by its column.
pub(super) fn value_error(col: &Column, why: &str) -> SqlError {
    SqlError::Value { message: format!("column `{}`: {why}", col.name()) }
}

fn json_array<T: serde::Serialize>(col: &mut Column, v: Vec<Option<T>>) {
    col.text(&serde_json::to_string(&v).unwrap_or_default())
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

    fn numeric(n: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [n, weight as u16, sign, dscale].iter().chain(digits) {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_print_as_postgresql_prints_them() {
        // 12345678.9012 with scale 6: weight 1 (two groups before the point).
        assert_eq!(numeric_text(&numeric(3, 1, 0, 6, &[1234, 5678, 9012])).unwrap(), "12345678.901200");
        // -0.0005 (weight -1: the first group is after the point).
        assert_eq!(numeric_text(&numeric(1, -1, 0x4000, 4, &[5])).unwrap(), "-0.0005");
        // 10000 (trailing zero groups are not sent).
        assert_eq!(numeric_text(&numeric(1, 1, 0, 0, &[1])).unwrap(), "10000");
        assert_eq!(numeric_text(&numeric(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(numeric_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric_text(&[0, 1]).is_err());
    }
}
