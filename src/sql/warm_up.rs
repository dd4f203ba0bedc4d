//! Rows the zygote and its children warm up on, written by the same
//! encoder as a query's rows.

use super::encode::{Column, Kind, Table};
use super::{FetchLimits, SqlError};

/// Which warm-up rows (`warm_up_rows`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WarmUp {
    /// Every column kind: the zygote reads them once at start-up, so each
    /// child starts from an image in which the whole reading path
    /// (pyarrow's, or the harness's own reader where an environment has no
    /// pyarrow) has run.
    Zygote,
    /// Integers, floats and text only: each pre-forked child reads them
    /// before its request, taking the pages the common path writes as its
    /// own. Every kind here cost the child more CPU (13 ms against 8 ms)
    /// than the request saved.
    Child,
}

/// Three rows (the second all NULLs), as the encoder writes a query's rows.
pub fn warm_up_rows(which: WarmUp) -> Result<Vec<u8>, SqlError> {
    let kinds = [
        ("i", Kind::Integer),
        ("f", Kind::Float),
        ("s", Kind::Text),
        ("b", Kind::Boolean),
        ("u", Kind::UInteger),
        ("y", Kind::Bytes),
        ("d", Kind::Decimal),
        ("day", Kind::Date),
        ("t", Kind::Time),
        ("ts", Kind::Timestamp),
        ("tz", Kind::TimestampTz),
    ];
    let n = if which == WarmUp::Child { 3 } else { kinds.len() };
    let columns = kinds[..n].iter().map(|(name, k)| Column::typed(*name, *k)).collect();
    let limits = FetchLimits { max_rows: 3, max_bytes: 0, timeout: std::time::Duration::ZERO };
    let mut table = Table::new(columns, limits);
    for row in 0..3i64 {
        for c in table.start_row()? {
            if row == 1 {
                c.null();
                continue;
            }
            match c.name() {
                "i" => c.int(row - 7),
                "f" => c.float(row as f64 + 0.5),
                "s" => c.text("été"),
                "b" => c.bool(row == 0),
                "u" => c.uint(u64::MAX - row as u64),
                "y" => c.bytes(b"\x00\xff"),
                "d" => c.text("12.50"),
                "day" => c.date(19_000 + row as i32),
                "t" => c.time(3_600_000_000 + row),
                "ts" => c.timestamp(1_700_000_000_000_000 + row),
                _ => c.timestamp(-86_400_000_000 + row),
            }
        }
        table.end_row()?;
    }
    table.finish()?.arrow.to_vec().map_err(|e| SqlError::Encode(e.to_string()))
}
