//! Helpers shared by the checker's test files: the policies, naming rules
//! and catalogue the tests run under.

// Each test file uses its own part of these.
#![allow(dead_code)]

use sluice_sql_guard::{Catalog, Checked, Dialect, NameRules, TableAllow, TableRef, check};

pub fn only(tables: &[&str]) -> TableAllow {
    TableAllow::Only(tables.iter().map(|t| TableRef::parse(t).unwrap()).collect())
}

pub fn rules(d: Dialect) -> NameRules {
    match d {
        Dialect::Sqlite => NameRules::sqlite(),
        Dialect::Postgres => NameRules { dialect: d, default_schema: "public".into(), case_sensitive: true },
        Dialect::MySql => NameRules { dialect: d, default_schema: "test".into(), case_sensitive: true },
    }
}

/// The tables the dialect tests name, as a catalogue would list them.
pub fn catalog() -> Catalog {
    let mut c = Catalog::default();
    for (table, cols) in [
        ("allowed", &["id", "v"][..]),
        ("orders", &["id", "ts", "amount", "name"][..]),
        ("t", &["a", "x", "y", "ts", "data", "tags", "name"][..]),
    ] {
        for col in cols {
            c.add_column("public", table, col);
        }
    }
    c
}

pub fn run(d: Dialect, sql: &str, tables: &TableAllow) -> Result<Checked, String> {
    check(sql, &rules(d), tables, &catalog()).map_err(|r| r.0)
}

pub fn check_sqlite(sql: &str, tables: &TableAllow) -> Result<Vec<String>, String> {
    run(Dialect::Sqlite, sql, tables).map(|c| c.tables)
}
