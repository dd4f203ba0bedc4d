//! Any text, every dialect, with and without a table allow-list: the guard
//! answers (never panics, never overflows its stack), and what it accepts
//! is a fixed point — the canonical text passes again and prints the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sql_guard::{Catalog, Dialect, NameRules, TableAllow, TableRef, check};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let only = TableAllow::Only(vec![TableRef::parse("allowed").unwrap()]);
    let mut catalog = Catalog::default();
    for schema in ["main", "public", "app"] {
        catalog.add_column(schema, "allowed", "id");
        catalog.add_column(schema, "allowed", "v");
    }
    for rules in [
        NameRules::sqlite(),
        NameRules { dialect: Dialect::Postgres, default_schema: "public".into(), case_sensitive: true },
        NameRules { dialect: Dialect::MySql, default_schema: "app".into(), case_sensitive: true },
    ] {
        for tables in [&TableAllow::All, &only] {
            if let Ok(c) = check(sql, &rules, tables, &catalog) {
                let again = check(&c.canonical, &rules, tables, &catalog)
                    .unwrap_or_else(|e| panic!("{:?}: accepted {sql:?} as {:?}, which is refused: {e}", rules.dialect, c.canonical));
                assert_eq!(again, c, "{:?}: the canonical text of {sql:?} is not stable", rules.dialect);
            }
        }
    }
});
