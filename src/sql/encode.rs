//! Rows to Arrow, value by value: each backend decodes a value straight
//! into its column's Arrow builder (typed once per column from the
//! statement's metadata; SQLite's columns decide from their values, see
//! `dynamic.rs`), and the finished batch is written as an Arrow IPC stream
//! into a sealed memfd (`payload.rs`) that the sandboxed child maps.
//! No per-value intermediate: a value is copied once, into its column.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{Field, Schema};
use serde::Serialize;

use super::dynamic::Dynamic;
pub use super::kind::Kind;
use super::payload::ArrowFile;
use super::{FetchLimits, SqlError};

/// What one value costs against `FetchLimits::max_bytes`, besides the
/// length of a text or blob (README: "32 per value").
pub(crate) const VALUE_SLOT: u64 = 32;

/// A column as the response describes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: &'static str,
}

/// The encoded result of a query.
#[derive(Debug)]
pub struct Rows {
    pub columns: Vec<ColumnInfo>,
    pub row_count: usize,
    /// The rows as one Arrow IPC stream, in a sealed memfd.
    pub arrow: ArrowFile,
}

/// Rows in the first allocation of each builder.
const INITIAL_ROWS: usize = 1024;

enum Values {
    Boolean(BooleanBuilder),
    Integer(Int64Builder),
    UInteger(UInt64Builder),
    Float(Float64Builder),
    /// Text and the kinds sent as text.
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    /// SQLite: typed by its values when it is finished.
    Dynamic(Dynamic),
}

/// One column being filled. The push methods take a value as the backend
/// decoded it; a value the column's type cannot hold is a bug in a
/// backend's type table, reported by `finish` (never a silent NULL).
pub struct Column {
    name: String,
    kind: Option<Kind>,
    values: Values,
    /// Bytes of text and blobs pushed so far (for the byte budget).
    var_bytes: u64,
    mismatch: Option<&'static str>,
}

impl Column {
    /// A column of a statically typed backend.
    pub fn typed(name: impl Into<String>, kind: Kind) -> Self {
        let n = INITIAL_ROWS;
        let values = match kind {
            Kind::Boolean => Values::Boolean(BooleanBuilder::with_capacity(n)),
            Kind::Integer => Values::Integer(Int64Builder::with_capacity(n)),
            Kind::UInteger => Values::UInteger(UInt64Builder::with_capacity(n)),
            Kind::Float => Values::Float(Float64Builder::with_capacity(n)),
            Kind::Text | Kind::Decimal | Kind::Json | Kind::Uuid | Kind::Interval | Kind::Array => {
                Values::Text(StringBuilder::with_capacity(n, n * 8))
            }
            Kind::Bytes => Values::Bytes(BinaryBuilder::with_capacity(n, n * 8)),
            Kind::Date => Values::Date(Date32Builder::with_capacity(n)),
            Kind::Time => Values::Time(Time64MicrosecondBuilder::with_capacity(n)),
            Kind::Timestamp | Kind::TimestampTz => {
                Values::Timestamp(TimestampMicrosecondBuilder::with_capacity(n))
            }
        };
        Self { name: name.into(), kind: Some(kind), values, var_bytes: 0, mismatch: None }
    }

    /// A column typed by its values (SQLite), `declared` deciding where
    /// the values leave room.
    pub fn dynamic(name: impl Into<String>, declared: &str) -> Self {
        let values = Values::Dynamic(Dynamic::new(declared));
        Self { name: name.into(), kind: None, values, var_bytes: 0, mismatch: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn null(&mut self) {
        match &mut self.values {
            Values::Boolean(b) => b.append_null(),
            Values::Integer(b) => b.append_null(),
            Values::UInteger(b) => b.append_null(),
            Values::Float(b) => b.append_null(),
            Values::Text(b) => b.append_null(),
            Values::Bytes(b) => b.append_null(),
            Values::Date(b) => b.append_null(),
            Values::Time(b) => b.append_null(),
            Values::Timestamp(b) => b.append_null(),
            Values::Dynamic(d) => d.null(),
        }
    }

    fn wrong(&mut self, what: &'static str) {
        self.mismatch.get_or_insert(what);
        self.null();
    }

    pub fn bool(&mut self, v: bool) {
        match &mut self.values {
            Values::Boolean(b) => b.append_value(v),
            Values::Text(b) => b.append_value(if v { "true" } else { "false" }),
            _ => self.wrong("a boolean"),
        }
    }

    pub fn int(&mut self, v: i64) {
        match &mut self.values {
            Values::Integer(b) => b.append_value(v),
            Values::Float(b) => b.append_value(v as f64),
            Values::Boolean(b) => b.append_value(v != 0),
            Values::UInteger(b) if v >= 0 => b.append_value(v as u64),
            Values::Text(b) => b.append_value(v.to_string()),
            Values::Dynamic(d) => d.int(v),
            _ => self.wrong("an integer"),
        }
    }

    pub fn uint(&mut self, v: u64) {
        match &mut self.values {
            Values::UInteger(b) => b.append_value(v),
            Values::Text(b) => b.append_value(v.to_string()),
            _ => self.wrong("an unsigned integer"),
        }
    }

    pub fn float(&mut self, v: f64) {
        match &mut self.values {
            Values::Float(b) => b.append_value(v),
            Values::Text(b) => b.append_value(v.to_string()),
            Values::Dynamic(d) => d.real(v),
            _ => self.wrong("a float"),
        }
    }

    pub fn text(&mut self, v: &str) {
        self.var_bytes += v.len() as u64;
        match &mut self.values {
            Values::Text(b) => b.append_value(v),
            Values::Dynamic(d) => d.text(v),
            _ => self.wrong("a text"),
        }
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.var_bytes += v.len() as u64;
        match &mut self.values {
            Values::Bytes(b) => b.append_value(v),
            Values::Dynamic(d) => d.blob(v),
            _ => self.wrong("a blob"),
        }
    }

    /// Days since 1970-01-01.
    pub fn date(&mut self, days: i32) {
        match &mut self.values {
            Values::Date(b) => b.append_value(days),
            _ => self.wrong("a date"),
        }
    }

    /// Microseconds since midnight.
    pub fn time(&mut self, micros: i64) {
        match &mut self.values {
            Values::Time(b) => b.append_value(micros),
            _ => self.wrong("a time"),
        }
    }

    /// Microseconds since the epoch (UTC for zone-aware columns).
    pub fn timestamp(&mut self, micros: i64) {
        match &mut self.values {
            Values::Timestamp(b) => b.append_value(micros),
            _ => self.wrong("a timestamp"),
        }
    }

    fn finish(self) -> Result<(Field, ArrayRef, ColumnInfo), SqlError> {
        if let Some(what) = self.mismatch {
            return Err(SqlError::Encode(format!(
                "column `{}` ({}) was given {what}: a bug in sluice's type table",
                self.name,
                self.kind.map(Kind::name).unwrap_or("dynamic")
            )));
        }
        let (kind, array): (Kind, ArrayRef) = match self.values {
            Values::Dynamic(d) => d.finish(),
            values => {
                let kind = self.kind.expect("typed columns have a kind");
                let array: ArrayRef = match values {
                    Values::Boolean(mut b) => Arc::new(b.finish()),
                    Values::Integer(mut b) => Arc::new(b.finish()),
                    Values::UInteger(mut b) => Arc::new(b.finish()),
                    Values::Float(mut b) => Arc::new(b.finish()),
                    Values::Text(mut b) => Arc::new(b.finish()),
                    Values::Bytes(mut b) => Arc::new(b.finish()),
                    Values::Date(mut b) => Arc::new(b.finish()),
                    Values::Time(mut b) => Arc::new(b.finish()),
                    Values::Timestamp(mut b) if kind == Kind::TimestampTz => {
                        Arc::new(b.finish().with_timezone("UTC"))
                    }
                    Values::Timestamp(mut b) => Arc::new(b.finish()),
                    Values::Dynamic(_) => unreachable!("handled above"),
                };
                (kind, array)
            }
        };
        let mut field = Field::new(&self.name, kind.arrow_type(), true);
        if let Some(sub) = kind.text_subtype() {
            let meta: std::collections::HashMap<String, String> =
                [("sluice:type".to_string(), sub.to_string())].into();
            field = field.with_metadata(meta);
        }
        Ok((field, array, ColumnInfo { name: self.name, type_name: kind.name() }))
    }
}

/// A query's columns being filled row by row, under the request's row and
/// byte limits.
pub struct Table {
    columns: Vec<Column>,
    rows: u64,
    limits: FetchLimits,
}

impl Table {
    pub fn new(columns: Vec<Column>, limits: FetchLimits) -> Self {
        Self { columns, rows: 0, limits }
    }

    /// Start a row: its values go into `columns()` in order, then
    /// `end_row`. One row past the limit is `RowLimit`.
    pub fn start_row(&mut self) -> Result<&mut [Column], SqlError> {
        if self.rows == self.limits.max_rows {
            return Err(SqlError::RowLimit { limit: self.limits.max_rows });
        }
        self.rows += 1;
        Ok(&mut self.columns)
    }

    /// The row is complete: past the byte budget, fetching stops here.
    pub fn end_row(&mut self) -> Result<(), SqlError> {
        let limit = self.limits.max_bytes;
        if limit > 0 {
            let fixed = self.rows * VALUE_SLOT * self.columns.len() as u64;
            let var: u64 = self.columns.iter().map(|c| c.var_bytes).sum();
            if fixed + var > limit {
                return Err(SqlError::ByteLimit { limit });
            }
        }
        Ok(())
    }

    /// Build the arrays and write them as one Arrow IPC stream.
    pub fn finish(self) -> Result<Rows, SqlError> {
        let row_count = self.rows as usize;
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        let mut infos = Vec::with_capacity(self.columns.len());
        for c in self.columns {
            let (field, array, info) = c.finish()?;
            fields.push(field);
            arrays.push(array);
            infos.push(info);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(row_count)),
        )
        .map_err(|e| SqlError::Encode(e.to_string()))?;
        let arrow = ArrowFile::write(&schema, &batch)?;
        Ok(Rows { columns: infos, row_count, arrow })
    }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, TimeUnit};

    use super::*;

    fn limits() -> FetchLimits {
        FetchLimits { max_rows: 10, max_bytes: 0, timeout: std::time::Duration::from_secs(1) }
    }

    fn read(rows: &Rows) -> RecordBatch {
        let bytes = rows.arrow.to_vec().unwrap();
        let mut reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        reader.next().unwrap().unwrap()
    }

    #[test]
    fn typed_columns_get_arrow_types_and_text_subtypes() {
        let mut t = Table::new(
            vec![
                Column::typed("u", Kind::UInteger),
                Column::typed("d", Kind::Decimal),
                Column::typed("tz", Kind::TimestampTz),
                Column::typed("day", Kind::Date),
            ],
            limits(),
        );
        let row = t.start_row().unwrap();
        row[0].uint(u64::MAX);
        row[1].text("1.10");
        row[2].timestamp(0);
        row[3].date(1);
        t.end_row().unwrap();
        let rows = t.finish().unwrap();
        let names: Vec<_> = rows.columns.iter().map(|c| c.type_name).collect();
        assert_eq!(names, ["unsigned_integer", "decimal", "timestamptz", "date"]);
        let batch = read(&rows);
        let schema = batch.schema();
        assert_eq!(schema.field(0).data_type(), &DataType::UInt64);
        assert_eq!(schema.field(1).metadata().get("sluice:type").map(String::as_str), Some("decimal"));
        assert_eq!(
            schema.field(2).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn limits_stop_at_the_row_past_them() {
        let mut t =
            Table::new(vec![Column::typed("t", Kind::Text)], FetchLimits { max_bytes: 70, ..limits() });
        t.start_row().unwrap()[0].text("0123456789");
        t.end_row().unwrap();
        t.start_row().unwrap()[0].text("0123456789");
        // Two values: 2 × 32 + 20 bytes > 70.
        assert!(matches!(t.end_row(), Err(SqlError::ByteLimit { limit: 70 })));
        let mut t =
            Table::new(vec![Column::typed("i", Kind::Integer)], FetchLimits { max_rows: 1, ..limits() });
        t.start_row().unwrap()[0].int(1);
        assert!(matches!(t.start_row(), Err(SqlError::RowLimit { limit: 1 })));
    }

    #[test]
    fn a_value_the_type_cannot_hold_is_an_error_not_a_null() {
        let mut t = Table::new(vec![Column::typed("d", Kind::Date)], limits());
        t.start_row().unwrap()[0].text("2024-01-01");
        let e = t.finish().unwrap_err().to_string();
        assert!(e.contains("column `d` (date) was given a text"), "{e}");
    }

    #[test]
    fn encodes_a_readable_stream() {
        let mut t =
            Table::new(vec![Column::dynamic("i", "INTEGER"), Column::typed("t", Kind::Text)], limits());
        let row = t.start_row().unwrap();
        row[0].int(i64::MAX);
        row[1].text("x");
        let row = t.start_row().unwrap();
        row[0].null();
        row[1].null();
        let rows = t.finish().unwrap();
        assert_eq!(rows.row_count, 2);
        let batch = read(&rows);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).null_count(), 1);
        assert_eq!(rows.columns[1], ColumnInfo { name: "t".into(), type_name: "text" });
    }
}
