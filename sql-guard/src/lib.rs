//! sluice's SQL guard, the parser layer of its read-only promise: parse one
//! query in the backend's dialect, accept only constructs it knows (an
//! allow-list of statement kinds, table factors, expressions, functions,
//! operators and types), check every relation against a policy's tables
//! under the database's own naming rules, and return the canonical SQL
//! printed back from the checked AST — the only text the database runs.
//!
//! Pure code, no I/O: the server crate runs the result under the engine's
//! own permissions, and `fuzz/` fuzzes `check` directly.

pub mod allow;
pub mod canonical;
pub mod catalog;
mod check;
pub mod names;
pub mod tables;

pub use catalog::Catalog;
pub use check::{Checked, MAX_SQL_BYTES, Rejection, check};
pub use names::{NameRules, Resolved};
pub use tables::{NamePart, TableAllow, TableRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
        }
    }
}
