//! What the guard knows of the database's contents, so that it reads names
//! the way the engine will:
//! - the columns of each table and view: PostgreSQL reads `t.name` as a
//!   call of the function `name(t)` when `t` has no column `name`, so a
//!   dotted name is accepted only where it is a real column (or an allowed
//!   function);
//! - allowed function names an unqualified call of which could reach a
//!   function that is not a built-in: on MySQL/MariaDB the names this server
//!   has no built-in for and the stored functions of the default database;
//!   on PostgreSQL functions outside `pg_catalog` named like the forms sluice
//!   cannot print schema-qualified (`CEIL`, `FLOOR`). Those names are refused;
//! - PostgreSQL operators defined outside `pg_catalog` for built-in types,
//!   which an expression using that symbol (or `IN`, `BETWEEN`, `LIKE`, … that
//!   use it) could resolve to: such expressions are refused.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Columns by (schema, table), all as the database stores them.
    columns: HashMap<(String, String), Vec<String>>,
    /// Names whose unqualified call may not reach a built-in, lower case.
    shadowed: HashSet<String>,
    /// PostgreSQL operators also defined outside pg_catalog for built-in
    /// types: an expression may resolve to those (best type match wins,
    /// whatever the search path).
    shadowed_operators: HashSet<String>,
}

impl Catalog {
    pub fn add_column(&mut self, schema: &str, table: &str, column: &str) {
        self.columns.entry((schema.to_string(), table.to_string())).or_default().push(column.to_string());
    }

    pub fn add_shadowed(&mut self, name: &str) {
        self.shadowed.insert(name.to_ascii_lowercase());
    }

    /// The columns of a table as stored, if the catalogue knows it.
    pub fn columns(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.columns.get(&(schema.to_string(), table.to_string())).map(Vec::as_slice)
    }

    pub fn add_shadowed_operator(&mut self, symbol: &str) {
        self.shadowed_operators.insert(symbol.to_string());
    }

    pub fn is_shadowed_operator(&self, symbol: &str) -> bool {
        self.shadowed_operators.contains(symbol)
    }

    pub fn is_shadowed(&self, name: &str) -> bool {
        self.shadowed.contains(&name.to_ascii_lowercase())
    }
}
