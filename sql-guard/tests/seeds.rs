//! The fuzz target's property over its seed corpus (`fuzz/seeds`), on every
//! `cargo test`: the guard answers every seed, and what it accepts is a
//! fixed point. CI also runs `cargo fuzz` from these seeds for a while.

use sluice_sql_guard::{Catalog, Dialect, NameRules, TableAllow, TableRef, check};

#[test]
fn seeds_are_answered_and_accepted_text_is_stable() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds");
    let only = TableAllow::Only(vec![TableRef::parse("allowed").unwrap()]);
    let mut catalog = Catalog::default();
    for schema in ["main", "public", "app"] {
        catalog.add_column(schema, "allowed", "id");
        catalog.add_column(schema, "allowed", "v");
    }
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        seeds += 1;
        for rules in [
            NameRules::sqlite(),
            NameRules { dialect: Dialect::Postgres, default_schema: "public".into(), case_sensitive: true },
            NameRules { dialect: Dialect::MySql, default_schema: "app".into(), case_sensitive: true },
        ] {
            for tables in [&TableAllow::All, &only] {
                if let Ok(c) = check(&sql, &rules, tables, &catalog) {
                    let again = check(&c.canonical, &rules, tables, &catalog).unwrap();
                    assert_eq!(again, c, "{:?}: {sql}", rules.dialect);
                }
            }
        }
    }
    assert!(seeds > 20, "the seed corpus is missing");
}
