//! The column types sluice presents, and the Arrow type each is sent as.

use arrow_schema::{DataType, TimeUnit};

/// A column's type as sluice presents it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Boolean,
    Integer,
    /// Unsigned 64-bit (MySQL BIGINT UNSIGNED): exact, as pandas uint64.
    UInteger,
    Float,
    Text,
    Bytes,
    /// Exact decimal, sent as text; a column of decimal.Decimal in pandas.
    Decimal,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// JSON document as text.
    Json,
    Uuid,
    /// Interval/duration as ISO 8601 text.
    Interval,
    /// Array as JSON text.
    Array,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Boolean => "boolean",
            Kind::Integer => "integer",
            Kind::UInteger => "unsigned_integer",
            Kind::Float => "float",
            Kind::Text => "text",
            Kind::Bytes => "bytes",
            Kind::Decimal => "decimal",
            Kind::Date => "date",
            Kind::Time => "time",
            Kind::Timestamp => "timestamp",
            Kind::TimestampTz => "timestamptz",
            Kind::Json => "json",
            Kind::Uuid => "uuid",
            Kind::Interval => "interval",
            Kind::Array => "array",
        }
    }

    /// Text kinds the harness turns into richer Python values.
    pub(super) fn text_subtype(self) -> Option<&'static str> {
        match self {
            Kind::Decimal => Some("decimal"),
            Kind::Json => Some("json"),
            Kind::Uuid => Some("uuid"),
            Kind::Interval => Some("interval"),
            Kind::Array => Some("array"),
            _ => None,
        }
    }

    pub(super) fn arrow_type(self) -> DataType {
        match self {
            Kind::Boolean => DataType::Boolean,
            Kind::Integer => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::UInteger => DataType::UInt64,
            Kind::Text | Kind::Decimal | Kind::Json | Kind::Uuid | Kind::Interval | Kind::Array => {
                DataType::Utf8
            }
            Kind::Bytes => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}
