//! Rows to Arrow: a column of cells becomes one typed Arrow array, then the
//! batch is written as an Arrow IPC stream that pyarrow reads without any
//! parsing (exact floats, real NULLs, integer columns stay integers).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::Serialize;

/// One value as the database returned it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since the epoch (UTC for zone-aware columns).
    Timestamp(i64),
}

/// A column's values plus what the database declared about it.
#[derive(Debug, Clone)]
pub struct ColumnData {
    pub name: String,
    /// Declared type as the backend names it (may be empty).
    pub declared: String,
    pub cells: Vec<Cell>,
    /// Set by statically typed backends; SQLite's is inferred from values.
    pub kind: Option<Kind>,
}

/// A column as the response describes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: &'static str,
}

/// The encoded result of a query.
#[derive(Debug, Clone)]
pub struct Rows {
    pub columns: Vec<ColumnInfo>,
    pub row_count: usize,
    pub arrow_ipc: Vec<u8>,
}

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
    fn name(self) -> &'static str {
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
    fn text_subtype(self) -> Option<&'static str> {
        match self {
            Kind::Decimal => Some("decimal"),
            Kind::Json => Some("json"),
            Kind::Uuid => Some("uuid"),
            Kind::Interval => Some("interval"),
            Kind::Array => Some("array"),
            _ => None,
        }
    }
}

/// The declared type's affinity, used when the values do not decide.
fn declared_kind(declared: &str) -> Kind {
    let d = declared.to_ascii_uppercase();
    if d.contains("BOOL") {
        Kind::Boolean
    } else if d.contains("INT") {
        Kind::Integer
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        Kind::Float
    } else if d.contains("BLOB") {
        Kind::Bytes
    } else {
        Kind::Text
    }
}

/// Pick one Arrow type for the column from its values (SQLite's typing is
/// per value) and, where they leave room, its declared type.
fn column_kind(c: &ColumnData) -> Kind {
    if let Some(k) = c.kind {
        return k;
    }
    let (mut ints, mut reals, mut texts, mut blobs, mut bool_like) = (0, 0, 0, 0, true);
    for cell in &c.cells {
        match cell {
            Cell::Null => {}
            Cell::Int(v) => {
                ints += 1;
                bool_like &= *v == 0 || *v == 1;
            }
            Cell::Real(_) => reals += 1,
            Cell::Text(_) => texts += 1,
            Cell::Blob(_) => blobs += 1,
            // Only typed backends produce these, and they set the kind.
            _ => texts += 1,
        }
    }
    let declared = declared_kind(&c.declared);
    match (ints, reals, texts, blobs) {
        (0, 0, 0, 0) => declared,
        (_, 0, 0, 0) if declared == Kind::Boolean && bool_like => Kind::Boolean,
        (_, 0, 0, 0) => Kind::Integer,
        (_, _, 0, 0) => Kind::Float,
        (0, 0, _, 0) => Kind::Text,
        (0, 0, 0, _) => Kind::Bytes,
        _ => Kind::Text, // mixed storage classes: show every value as text
    }
}

fn as_text(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Null => None,
        Cell::Int(v) => Some(v.to_string()),
        Cell::Real(v) => Some(v.to_string()),
        Cell::Text(s) => Some(s.clone()),
        Cell::Blob(b) => Some(hex::encode(b)),
        Cell::UInt(v) => Some(v.to_string()),
        Cell::Bool(b) => Some(b.to_string()),
        Cell::Date(d) => Some(d.to_string()),
        Cell::Time(t) | Cell::Timestamp(t) => Some(t.to_string()),
    }
}

fn build_array(kind: Kind, cells: &[Cell]) -> ArrayRef {
    match kind {
        Kind::Boolean => {
            let mut b = BooleanBuilder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Cell::Int(v) => Some(*v != 0),
                    Cell::Bool(v) => Some(*v),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Integer => {
            let mut b = Int64Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Cell::Int(v) => Some(*v),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Cell::Int(v) => Some(*v as f64),
                    Cell::Real(v) => Some(*v),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::UInteger => {
            let mut b = UInt64Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(match c {
                    Cell::UInt(v) => Some(*v),
                    Cell::Int(v) => u64::try_from(*v).ok(),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Date => {
            let mut b = Date32Builder::with_capacity(cells.len());
            for c in cells {
                b.append_option(if let Cell::Date(d) = c { Some(*d) } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::Time => {
            let mut b = Time64MicrosecondBuilder::with_capacity(cells.len());
            for c in cells {
                b.append_option(if let Cell::Time(t) = c { Some(*t) } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::Timestamp | Kind::TimestampTz => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(cells.len());
            for c in cells {
                b.append_option(if let Cell::Timestamp(t) = c { Some(*t) } else { None });
            }
            let a = b.finish();
            if kind == Kind::TimestampTz { Arc::new(a.with_timezone("UTC")) } else { Arc::new(a) }
        }
        Kind::Text | Kind::Decimal | Kind::Json | Kind::Uuid | Kind::Interval | Kind::Array => {
            let mut b = StringBuilder::with_capacity(cells.len(), cells.len() * 8);
            for c in cells {
                b.append_option(as_text(c));
            }
            Arc::new(b.finish())
        }
        Kind::Bytes => {
            let mut b = BinaryBuilder::with_capacity(cells.len(), cells.len() * 8);
            for c in cells {
                b.append_option(match c {
                    Cell::Blob(v) => Some(v.as_slice()),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
    }
}

fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Kind::Boolean => DataType::Boolean,
        Kind::Integer => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::UInteger => DataType::UInt64,
        Kind::Text | Kind::Decimal | Kind::Json | Kind::Uuid | Kind::Interval | Kind::Array => DataType::Utf8,
        Kind::Bytes => DataType::Binary,
        Kind::Date => DataType::Date32,
        Kind::Time => DataType::Time64(TimeUnit::Microsecond),
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// Encode columns (all of the same length) as one Arrow IPC stream.
pub fn encode(columns: &[ColumnData], row_count: usize) -> Result<Rows, arrow_schema::ArrowError> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    let mut infos = Vec::with_capacity(columns.len());
    for c in columns {
        let kind = column_kind(c);
        let mut field = Field::new(&c.name, arrow_type(kind), true);
        if let Some(sub) = kind.text_subtype() {
            let meta: std::collections::HashMap<String, String> =
                [("sluice:type".to_string(), sub.to_string())].into();
            field = field.with_metadata(meta);
        }
        fields.push(field);
        arrays.push(build_array(kind, &c.cells));
        infos.push(ColumnInfo { name: c.name.clone(), type_name: kind.name() });
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(row_count)),
    )?;
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, &schema)?;
        w.write(&batch)?;
        w.finish()?;
    }
    Ok(Rows { columns: infos, row_count, arrow_ipc: buf })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(declared: &str, cells: Vec<Cell>) -> ColumnData {
        ColumnData { name: "c".into(), declared: declared.into(), cells, kind: None }
    }

    #[test]
    fn kinds_follow_values_then_declaration() {
        assert_eq!(column_kind(&col("INTEGER", vec![Cell::Int(1), Cell::Null])), Kind::Integer);
        assert_eq!(column_kind(&col("", vec![Cell::Int(1), Cell::Real(0.5)])), Kind::Float);
        assert_eq!(column_kind(&col("BOOLEAN", vec![Cell::Int(1), Cell::Int(0)])), Kind::Boolean);
        assert_eq!(column_kind(&col("BOOLEAN", vec![Cell::Int(2)])), Kind::Integer);
        assert_eq!(column_kind(&col("REAL", vec![Cell::Null])), Kind::Float);
        assert_eq!(column_kind(&col("", vec![Cell::Int(1), Cell::Text("a".into())])), Kind::Text);
        assert_eq!(column_kind(&col("BLOB", vec![])), Kind::Bytes);
    }

    #[test]
    fn typed_columns_get_arrow_types_and_text_subtypes() {
        let typed =
            |kind, cells| ColumnData { name: "c".into(), declared: String::new(), cells, kind: Some(kind) };
        let cols = vec![
            typed(Kind::UInteger, vec![Cell::UInt(u64::MAX)]),
            typed(Kind::Decimal, vec![Cell::Text("1.10".into())]),
            typed(Kind::TimestampTz, vec![Cell::Timestamp(0)]),
            typed(Kind::Date, vec![Cell::Date(1)]),
        ];
        let rows = encode(&cols, 1).unwrap();
        let names: Vec<_> = rows.columns.iter().map(|c| c.type_name).collect();
        assert_eq!(names, ["unsigned_integer", "decimal", "timestamptz", "date"]);
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(rows.arrow_ipc), None).unwrap();
        let schema = reader.schema();
        assert_eq!(schema.field(0).data_type(), &DataType::UInt64);
        assert_eq!(schema.field(1).metadata().get("sluice:type").map(String::as_str), Some("decimal"));
        assert_eq!(
            schema.field(2).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn encodes_a_readable_stream() {
        let cols = vec![
            col("INTEGER", vec![Cell::Int(i64::MAX), Cell::Null]),
            ColumnData {
                name: "t".into(),
                declared: "TEXT".into(),
                cells: vec![Cell::Text("x".into()), Cell::Null],
                kind: None,
            },
        ];
        let rows = encode(&cols, 2).unwrap();
        assert_eq!(rows.row_count, 2);
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(rows.arrow_ipc), None).unwrap();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(batches[0].column(0).null_count(), 1);
        assert_eq!(rows.columns[1], ColumnInfo { name: "t".into(), type_name: "text" });
    }
}
