//! The SQL stage: check the query (the `sluice_sql_guard` crate), run the
//! canonical text printed from the checked AST on a read-only pooled
//! connection with a statement timeout and a row limit, under the engine's
//! own permissions for the policy, and encode the rows as Arrow IPC for the
//! sandbox.
//!
//! Three rules hold on every backend (README, "Data sources"): the database
//! runs exactly the text that was checked; statement kinds, table factors,
//! functions and operators are allowed by name; and the engine enforces the
//! table allow-list and read-only-ness too (SQLite's authorizer, a
//! per-policy role on PostgreSQL and MySQL/MariaDB), so a parser mistake is
//! not a breach.

mod backend;
mod dynamic;
pub mod encode;
mod kind;
pub mod mysql;
mod mysql_types;
mod payload;
pub mod postgres;
mod postgres_copy;
mod postgres_role;
mod postgres_types;
mod shared;
mod source;
pub mod sqlite;
mod url;
pub mod warm_up;

use std::time::Duration;

use serde::Serialize;

pub use backend::Backend;
pub use encode::{ColumnInfo, Rows};
pub use payload::ArrowFile;
/// The parser layer lives in its own crate (pure code, fuzzed in `fuzz/`).
pub use sluice_sql_guard::{Catalog, Checked, Dialect, NameRules, Rejection, allow};
pub use source::DataSource;
pub use url::redact;

pub(crate) use shared::{
    CANCEL_TIMEOUT, CatalogCache, bind_params, cancel_then_close, cancels, check_param_count, collect_rows,
    schema_columns, typed_columns, unreadable,
};

use crate::policy::TableAllow;

/// What one policy lets a query touch, as the engine enforces it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub tables: &'a TableAllow,
    /// The database role queries run as (PostgreSQL, MySQL/MariaDB).
    pub role: Option<&'a str>,
}

/// How far the database itself enforces one policy (start-up, /readyz).
#[derive(Debug, Clone, Serialize)]
pub struct EngineGuard {
    pub policy: String,
    /// The database refuses reads of tables the policy does not allow.
    pub tables: bool,
    /// The database refuses writes (not only the read-only transaction).
    pub writes: bool,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error(
        "the query has {expected} placeholder(s) but `params` has {given} value(s); pass one value per placeholder"
    )]
    Params { expected: usize, given: usize },
    #[error("{0}")]
    Role(String),
    #[error("{message}")]
    Database { message: String },
    /// A value sluice cannot read as its column's type (the statement may
    /// still be running: its session is not reused).
    #[error("{message}")]
    Value { message: String },
    #[error("the query ran longer than the statement timeout of {seconds} s")]
    Timeout { seconds: f64 },
    #[error("the query returned more than {limit} rows")]
    RowLimit { limit: u64 },
    #[error("the query's values came to more than {limit} bytes")]
    ByteLimit { limit: u64 },
    #[error("cannot open the database {url}: {message}")]
    Connect { url: String, message: String },
    #[error("encoding the rows failed: {0}")]
    Encode(String),
    #[error("{message}")]
    Unavailable { message: String },
}

/// A bind parameter, from the request's `params` array.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// Per-request limits of the SQL stage.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_rows: u64,
    /// Bytes the fetched values take in the server (each value's slot, plus
    /// the length of text and blobs): fetching stops as soon as they pass it.
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// One column of the database's catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub data_type: String,
}
