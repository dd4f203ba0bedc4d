//! Reading a query's rows as PostgreSQL's binary COPY stream, each field
//! decoded straight into its column (what ConnectorX does): no row
//! objects, one message per row. Only for a query without parameters whose
//! columns are all of raw types (`PgType::is_raw`).
//!
//! It is sluice that writes `COPY (…) TO STDOUT`, around text that passed
//! the AST check and that PostgreSQL has just parsed, as one statement,
//! through the extended protocol (which refuses two). The same READ ONLY
//! transaction, role and statement timeout hold; a caller still cannot
//! send COPY.

use futures_util::TryStreamExt;

use super::encode::Table;
use super::postgres::db_error;
use super::postgres_types::{PgType, push_raw, value_error};
use super::{Rows, SqlError};

/// `COPY` around a statement PostgreSQL parsed as exactly one. The line
/// breaks end a trailing `--` comment before the closing parenthesis (a
/// statement that still does not fit is a syntax error, and nothing runs:
/// PostgreSQL parses a whole query string before running any of it).
pub(super) fn copy_statement(sql: &str) -> String {
    format!("COPY (\n{sql}\n) TO STDOUT (FORMAT binary)")
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Read the whole stream into `table`.
pub(super) async fn read<B: AsRef<[u8]>>(
    stream: impl futures_util::Stream<Item = Result<B, sqlx::Error>> + Unpin,
    table: Table,
    types: &[PgType],
) -> Result<Rows, SqlError> {
    let mut parser = Parser { table, types, header: false, ended: false, carry: Vec::new() };
    let mut stream = stream;
    while let Some(chunk) = stream.try_next().await.map_err(db_error)? {
        parser.feed(chunk.as_ref())?;
    }
    drop(stream);
    if !parser.ended {
        return Err(broken("the COPY stream ended without its trailer"));
    }
    parser.table.finish()
}

fn broken(why: &str) -> SqlError {
    SqlError::Value { message: format!("reading PostgreSQL's binary COPY stream: {why}") }
}

struct Parser<'a> {
    table: Table,
    types: &'a [PgType],
    header: bool,
    ended: bool,
    /// The start of a row that continues in the next message.
    carry: Vec<u8>,
}

impl Parser<'_> {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), SqlError> {
        if self.carry.is_empty() {
            let used = self.parse(chunk)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let used = self.parse(&buf)?;
            buf.drain(..used);
            self.carry = buf;
        }
        Ok(())
    }

    /// Parse every complete part of `buf`; returns the bytes used.
    fn parse(&mut self, buf: &[u8]) -> Result<usize, SqlError> {
        let mut at = 0;
        if !self.header {
            let Some(len) = header_len(buf)? else { return Ok(0) };
            at = len;
            self.header = true;
        }
        while at < buf.len() {
            if self.ended {
                return Err(broken("data after the trailer"));
            }
            let Some((end, fields)) = tuple_extent(&buf[at..], self.types.len())? else { break };
            match fields {
                None => self.ended = true,
                Some(_) => self.push_tuple(&buf[at + 2..at + end])?,
            }
            at += end;
        }
        Ok(at)
    }

    /// Push one complete tuple's fields (after its field count).
    fn push_tuple(&mut self, mut b: &[u8]) -> Result<(), SqlError> {
        let columns = self.table.start_row()?;
        for (col, t) in columns.iter_mut().zip(self.types) {
            let len = i32::from_be_bytes(b[..4].try_into().expect("checked"));
            b = &b[4..];
            if len < 0 {
                col.null();
            } else {
                let (value, rest) = b.split_at(len as usize);
                push_raw(col, *t, value).map_err(|e| value_error(col, &e))?;
                b = rest;
            }
        }
        self.table.end_row()
    }
}

/// The header's length, once all of it is there.
fn header_len(buf: &[u8]) -> Result<Option<usize>, SqlError> {
    let fixed = SIGNATURE.len() + 8;
    if buf.len() < fixed {
        return Ok(None);
    }
    if &buf[..SIGNATURE.len()] != SIGNATURE {
        return Err(broken("no PGCOPY signature"));
    }
    let ext = u32::from_be_bytes(buf[fixed - 4..fixed].try_into().expect("4 bytes")) as usize;
    Ok((buf.len() >= fixed + ext).then_some(fixed + ext))
}

/// The length of the tuple at the start of `b` if all of it is there, and
/// its field count (`None` for the trailer).
fn tuple_extent(b: &[u8], columns: usize) -> Result<Option<(usize, Option<usize>)>, SqlError> {
    if b.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([b[0], b[1]]);
    if count == -1 {
        return Ok(Some((2, None)));
    }
    if count as usize != columns {
        return Err(broken(&format!("a row of {count} fields for {columns} columns")));
    }
    let mut at = 2;
    for _ in 0..columns {
        let Some(len) = b.get(at..at + 4) else { return Ok(None) };
        let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
        at += 4;
        if len > 0 {
            at += len as usize;
        } else if len < -1 {
            return Err(broken("a negative field length"));
        }
    }
    Ok((b.len() >= at).then_some((at, Some(columns))))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sql::FetchLimits;
    use crate::sql::encode::Column;

    fn stream(types: &[PgType], rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut b = SIGNATURE.to_vec();
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&4u32.to_be_bytes());
        b.extend_from_slice(b"ext!");
        for row in rows {
            b.extend_from_slice(&(types.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(v);
                    }
                }
            }
        }
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b
    }

    fn parser(types: &[PgType], max_rows: u64) -> Parser<'_> {
        let limits = FetchLimits { max_rows, max_bytes: 0, timeout: Duration::from_secs(1) };
        let columns = types.iter().map(|t| Column::typed("c", t.kind())).collect();
        Parser { table: Table::new(columns, limits), types, header: false, ended: false, carry: Vec::new() }
    }

    #[test]
    fn rows_split_anywhere_across_messages_read_the_same() {
        let types = [PgType::Int8, PgType::Text];
        let rows: Vec<Vec<Option<Vec<u8>>>> = (0..5i64)
            .map(|i| vec![Some(i.to_be_bytes().to_vec()), (i % 2 == 0).then(|| format!("r{i}").into_bytes())])
            .collect();
        let bytes = stream(&types, &rows);
        let whole = {
            let mut p = parser(&types, 10);
            p.feed(&bytes).unwrap();
            assert!(p.ended && p.carry.is_empty());
            p.table.finish().unwrap().arrow.to_vec().unwrap()
        };
        for size in [1, 2, 3, 7, 13] {
            let mut p = parser(&types, 10);
            for chunk in bytes.chunks(size) {
                p.feed(chunk).unwrap();
            }
            assert!(p.ended, "chunks of {size}");
            assert_eq!(p.table.finish().unwrap().arrow.to_vec().unwrap(), whole, "chunks of {size}");
        }
    }

    #[test]
    fn limits_and_malformed_streams_are_errors() {
        let types = [PgType::Int4];
        let rows: Vec<_> = (0..3i32).map(|i| vec![Some(i.to_be_bytes().to_vec())]).collect();
        let mut p = parser(&types, 2);
        assert!(matches!(p.feed(&stream(&types, &rows)), Err(SqlError::RowLimit { limit: 2 })));
        let mut p = parser(&types, 10);
        assert!(p.feed(b"PGCOPY\nnot the signature").is_err());
        // Two fields for one column.
        let mut p = parser(&types, 10);
        let bad = stream(&[PgType::Int4, PgType::Int4], &[vec![Some(vec![0; 4]), None]]);
        assert!(p.feed(&bad).unwrap_err().to_string().contains("2 fields for 1 columns"));
        // A value of the wrong width names its column.
        let mut p = parser(&types, 10);
        let e = p.feed(&stream(&types, &[vec![Some(vec![0; 3])]])).unwrap_err().to_string();
        assert!(e.contains("column `c`"), "{e}");
    }
}
