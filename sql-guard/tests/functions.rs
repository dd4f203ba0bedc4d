//! The checker's function and operator allow-lists: refused functions,
//! calls printed schema-qualified on PostgreSQL, and names or operators
//! the database defines outside its built-ins.

mod common;

use common::{catalog, rules, run};
use sluice_sql_guard::{Dialect, TableAllow, check};

#[test]
fn functions_are_an_allow_list() {
    let all = TableAllow::All;
    for (d, sql, needle) in [
        (Dialect::Sqlite, "SELECT load_extension('/tmp/x.so')", "load_extension"),
        (Dialect::Sqlite, "SELECT id FROM iris WHERE readfile('/etc/passwd') IS NOT NULL", "readfile"),
        (Dialect::Sqlite, "SELECT * FROM pragma_table_info('iris')", "pragma_table_info"),
        (Dialect::Sqlite, "SELECT * FROM main.pragma_database_list", "pragma_database_list"),
        (Dialect::Postgres, "SELECT database_to_xml_and_xmlschema(true, false, '')::text", "database_to_xml"),
        (Dialect::Postgres, "SELECT lo_get(16384)", "lo_get"),
        (
            Dialect::Postgres,
            "SELECT pg_logical_emit_message(false, 'x', repeat('x', 50000000))",
            "pg_logical_emit_message",
        ),
        (Dialect::Postgres, "SELECT pg_catalog.pg_terminate_backend(1)", "pg_terminate_backend"),
        (Dialect::Postgres, "SELECT \"pg_terminate_backend\"(1)", "pg_terminate_backend"),
        (Dialect::Postgres, "SELECT txid_current()", "txid_current"),
        (Dialect::Postgres, "SELECT current_setting('data_directory')", "current_setting"),
        (Dialect::Postgres, "SELECT * FROM pg_show_all_settings()", "pg_show_all_settings"),
        (Dialect::Postgres, "SELECT pg_advisory_lock(1) FROM generate_series(1, 500)", "pg_advisory_lock"),
        (
            Dialect::Postgres,
            "SELECT x::text AS x FROM LATERAL query_to_xml('select * from secret', true, false, '') x",
            "query_to_xml",
        ),
        (
            Dialect::Postgres,
            "SELECT U&\"quer\\0079_to_xml\"('select * from secret', true, false, '')::text",
            "quer",
        ),
        (Dialect::MySql, "SELECT LOAD_FILE('/etc/passwd')", "load_file"),
        (Dialect::MySql, "SELECT SLEEP(13)", "sleep"),
        (Dialect::MySql, "SELECT BENCHMARK(10, MD5('x'))", "benchmark"),
    ] {
        let e = run(d, sql, &all).unwrap_err();
        assert!(e.contains(needle), "{d:?} {sql}: {e}");
    }
    let e = run(Dialect::Postgres, "SELECT pg_sleep(1)", &all).unwrap_err();
    assert!(e.contains("GET /schema") && e.contains("aggregates"), "{e}");
}

/// PostgreSQL calls resolve in pg_catalog, so a function of the same name
/// elsewhere on the search path cannot run instead of the built-in.
#[test]
fn postgres_calls_are_printed_schema_qualified() {
    let c = run(
        Dialect::Postgres,
        "SELECT lower(v), count(*), coalesce(v, ''), current_date FROM allowed GROUP BY v",
        &TableAllow::All,
    )
    .unwrap();
    assert_eq!(
        c.canonical,
        "SELECT pg_catalog.lower(v), pg_catalog.count(*), coalesce(v, ''), current_date FROM allowed GROUP BY v"
    );
    // Every allowed function can be called, and is printed qualified.
    for f in sluice_sql_guard::allow::functions(Dialect::Postgres) {
        let sql = format!("SELECT {f}(v) FROM allowed");
        match run(Dialect::Postgres, &sql, &TableAllow::All) {
            Ok(c) => assert!(
                c.canonical.contains(&format!("pg_catalog.{f}("))
                    || c.canonical.to_ascii_lowercase().contains(&format!(" {f}("))
                    || (f == "substr" && c.canonical.contains("SUBSTRING(")),
                "{}",
                c.canonical
            ),
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    let c = run(Dialect::Postgres, "SELECT n FROM generate_series(1, 3) AS n", &TableAllow::All).unwrap();
    assert_eq!(c.canonical, "SELECT n FROM pg_catalog.generate_series(1, 3) AS n");
    // The comma form of SUBSTRING is a plain call; the FROM/FOR form is grammar.
    let c = run(Dialect::Postgres, "SELECT SUBSTRING(v, 1, 2), substr(v, 2) FROM allowed", &TableAllow::All)
        .unwrap();
    assert!(c.canonical.contains("SUBSTRING(v FROM 1 FOR 2)"), "{}", c.canonical);
    assert!(!c.canonical.contains("substr(") && !c.canonical.contains("SUBSTR("), "{}", c.canonical);
    // CEIL/FLOOR cannot be printed qualified: refused where a function of
    // that name exists outside pg_catalog.
    assert!(run(Dialect::Postgres, "SELECT CEIL(1.5)", &TableAllow::All).is_ok());
    let mut shadowed = catalog();
    shadowed.add_shadowed("ceil");
    let e = check("SELECT CEIL(1.5)", &rules(Dialect::Postgres), &TableAllow::All, &shadowed).unwrap_err();
    assert!(e.0.contains("outside pg_catalog"), "{}", e.0);
    assert!(run(Dialect::Postgres, "SELECT TRIM(v, 'x') FROM allowed", &TableAllow::All).is_err());
}

#[test]
fn mysql_names_without_a_builtin_are_refused() {
    let mut catalog = catalog();
    catalog.add_shadowed("REGEXP_LIKE");
    let e = check("SELECT regexp_like('a', 'a')", &rules(Dialect::MySql), &TableAllow::All, &catalog)
        .unwrap_err();
    assert!(e.0.contains("not a built-in"), "{}", e.0);
}

/// Operators PostgreSQL could resolve to a definition outside pg_catalog.
#[test]
fn shadowed_operators_are_refused_written_or_implied() {
    let mut c = catalog();
    c.add_shadowed_operator("+");
    c.add_shadowed_operator("=");
    c.add_shadowed_operator("~~");
    let pg = rules(Dialect::Postgres);
    for sql in [
        "SELECT v + v FROM allowed",
        "SELECT id FROM allowed WHERE v = 'x'",
        "SELECT id FROM allowed WHERE v IN ('a', 'b')",
        "SELECT id FROM allowed WHERE v IS DISTINCT FROM 'a'",
        "SELECT nullif(v, 'a') FROM allowed",
        "SELECT CASE v WHEN 'a' THEN 1 END FROM allowed",
        "SELECT id FROM allowed WHERE v LIKE 'a%'",
        "SELECT a.id FROM allowed a JOIN allowed b USING (id)",
    ] {
        assert!(check(sql, &pg, &TableAllow::All, &c).is_err(), "{sql}");
    }
    assert!(check("SELECT id FROM allowed WHERE id > 1 AND v <> 'a'", &pg, &TableAllow::All, &c).is_ok());
}
