//! The checker against the queries people write and the ones an attacker
//! writes, per dialect.

use sluice_sql_guard::{Catalog, Checked, Dialect, NameRules, TableAllow, TableRef, check};

fn only(tables: &[&str]) -> TableAllow {
    TableAllow::Only(tables.iter().map(|t| TableRef::parse(t).unwrap()).collect())
}

fn rules(d: Dialect) -> NameRules {
    match d {
        Dialect::Sqlite => NameRules::sqlite(),
        Dialect::Postgres => NameRules { dialect: d, default_schema: "public".into(), case_sensitive: true },
        Dialect::MySql => NameRules { dialect: d, default_schema: "test".into(), case_sensitive: true },
    }
}

/// The tables the dialect tests name, as a catalogue would list them.
fn catalog() -> Catalog {
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

fn run(d: Dialect, sql: &str, tables: &TableAllow) -> Result<Checked, String> {
    check(sql, &rules(d), tables, &catalog()).map_err(|r| r.0)
}

fn check_sqlite(sql: &str, tables: &TableAllow) -> Result<Vec<String>, String> {
    run(Dialect::Sqlite, sql, tables).map(|c| c.tables)
}

#[test]
fn plain_queries_pass_and_report_their_tables() {
    let all = TableAllow::All;
    assert_eq!(check_sqlite("SELECT * FROM iris", &all).unwrap(), vec!["iris"]);
    assert_eq!(
        check_sqlite("select a.x from Iris a join wine b on a.id = b.id", &all).unwrap(),
        vec!["iris", "wine"]
    );
    assert!(check_sqlite("VALUES (1), (2)", &all).unwrap().is_empty());
    assert_eq!(check_sqlite("SELECT 1 UNION SELECT id FROM iris", &all).unwrap(), vec!["iris"]);
    assert!(check_sqlite("SELECT * FROM iris WHERE id IN (SELECT id FROM iris)", &only(&["iris"])).is_ok());
}

#[test]
fn the_database_gets_the_printed_query_without_comments() {
    let c = run(Dialect::Sqlite, "select  *  from iris -- note\n where id = ? /* x */", &TableAllow::All)
        .unwrap();
    assert_eq!(c.canonical, "SELECT * FROM iris WHERE id = ?");
    assert_eq!(c.placeholders, 1);
    let c = run(Dialect::Postgres, "SELECT $2::int + $1", &TableAllow::All).unwrap();
    assert_eq!(c.placeholders, 2);
}

#[test]
fn legitimate_analytics_queries_pass() {
    let all = TableAllow::All;
    for (d, sql) in [
        (
            Dialect::Sqlite,
            "SELECT species, count(*) AS n, avg(petal_length) FROM iris GROUP BY species HAVING count(*) > 1 ORDER BY n DESC LIMIT 10",
        ),
        (Dialect::Sqlite, "SELECT id, row_number() OVER (PARTITION BY species ORDER BY id) FROM iris"),
        (
            Dialect::Sqlite,
            "SELECT CASE WHEN sepal_length > 5 THEN 'big' ELSE 'small' END, CAST(id AS TEXT), coalesce(species, '') FROM iris WHERE species LIKE 'set%' AND id BETWEEN 1 AND 10",
        ),
        (
            Dialect::Sqlite,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) SELECT * FROM c",
        ),
        (Dialect::Sqlite, "SELECT j.value FROM iris, json_each('[1,2]') AS j"),
        (
            Dialect::Sqlite,
            "SELECT strftime('%Y', 'now'), date('now', '-1 day'), json_extract('{\"a\":1}', '$.a')",
        ),
        (
            Dialect::Postgres,
            "SELECT date_trunc('month', ts) AS m, sum(amount)::numeric(12,2), percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM orders WHERE ts > now() - INTERVAL '30 days' GROUP BY 1 ORDER BY 1",
        ),
        (
            Dialect::Postgres,
            "SELECT * FROM generate_series(1, 10) AS g(n) CROSS JOIN LATERAL (SELECT n * 2 AS m) x",
        ),
        (
            Dialect::Postgres,
            "SELECT data->>'name', data #>> '{a,b}', tags @> ARRAY['x'], string_agg(name, ',' ORDER BY name) FROM t GROUP BY 1, 2, 3",
        ),
        (
            Dialect::Postgres,
            "SELECT count(*) FILTER (WHERE a > 1), x IS DISTINCT FROM y, a ~* 'x', EXTRACT(YEAR FROM ts), E'a\\nb', $1 FROM t",
        ),
        (Dialect::Postgres, "SELECT u.id FROM unnest(ARRAY[1, 2]) WITH ORDINALITY AS u(id, n)"),
        (
            Dialect::MySql,
            "SELECT DATE_FORMAT(ts, '%Y-%m') AS m, COUNT(*), GROUP_CONCAT(name ORDER BY name SEPARATOR ','), IF(a > 1, 'x', 'y') FROM `t` WHERE ts >= DATE_SUB(NOW(), INTERVAL 7 DAY) GROUP BY m LIMIT 5, 10",
        ),
        (
            Dialect::MySql,
            "SELECT CAST(x AS CHAR), CONVERT(y, SIGNED), j->>'$.a', JSON_EXTRACT(j, '$.b') FROM t WHERE name REGEXP '^a' AND id = ?",
        ),
    ] {
        if let Err(e) = run(d, sql, &all) {
            panic!("{d:?}: {sql}\n  {e}");
        }
    }
}

#[test]
fn anything_but_one_query_is_rejected() {
    let all = TableAllow::All;
    for (sql, needle) in [
        ("", "empty"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("INSERT INTO iris VALUES (1)", "INSERT"),
        ("UPDATE iris SET id = 1", "UPDATE"),
        ("DROP TABLE iris", "DROP TABLE"),
        ("CREATE TABLE x (a INT)", "CREATE TABLE"),
        ("PRAGMA query_only = 0", "PRAGMA"),
        ("ATTACH DATABASE 'x.db' AS x", "ATTACH"),
        ("BEGIN", "BEGIN"),
        ("EXPLAIN QUERY PLAN SELECT 1", "EXPLAIN"),
        ("VACUUM INTO '/tmp/x'", "parse"),
        ("SELECT * FROM iris WHERE", "does not parse"),
    ] {
        let e = check_sqlite(sql, &all).unwrap_err();
        assert!(e.contains(needle), "{sql}: {e}");
    }
}

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

/// Every query of the review, on its backend, with a policy
/// that allows only `allowed`.
#[test]
fn the_reviewed_bypasses_are_refused() {
    let t = only(&["allowed"]);
    for (d, sql) in [
        (Dialect::Sqlite, "SELECT $1::q(--) AS z, * FROM wine /*\n) AS z FROM iris"),
        (Dialect::Sqlite, "SELECT 1; ATTACH '/data/audit.sqlite' AS a"),
        (Dialect::Sqlite, "SELECT * FROM allowed; VACUUM INTO '/tmp/x'"),
        (Dialect::Postgres, "SELECT * FROM allowed UNION ALL TABLE secret"),
        (
            Dialect::Postgres,
            "SELECT x::text AS x FROM LATERAL query_to_xml('select * from secret',true,false,'') x",
        ),
        (Dialect::Postgres, "SELECT database_to_xml_and_xmlschema(true,false,'')::text"),
        (Dialect::Postgres, "SELECT U&\"quer\\0079_to_xml\"('select * from secret',true,false,'')::text"),
        (Dialect::Postgres, "SELECT 1 #--'\n 0, s FROM secret --' FROM allowed"),
        (Dialect::Postgres, "SELECT 1 >--'\n 0, s FROM secret --' FROM allowed"),
        (Dialect::Postgres, "SELECT 1 |/*' */ 0, s FROM secret --' FROM allowed"),
        (Dialect::Postgres, "WITH \"Secret\" AS (SELECT * FROM allowed) SELECT * FROM secret"),
        (Dialect::Postgres, "SELECT * FROM other.allowed"),
        (Dialect::Postgres, "SELECT * FROM \"ALLOWED\""),
        (Dialect::Postgres, "SELECT lo_get(1)"),
        (Dialect::Postgres, "SELECT txid_current() FROM allowed"),
        (Dialect::Postgres, "SELECT pg_terminate_backend(pid) FROM allowed"),
        (Dialect::Postgres, "SELECT current_setting('data_directory')"),
        (Dialect::Postgres, "SELECT * FROM pg_show_all_settings()"),
        (Dialect::Postgres, "SELECT * FROM pg_settings"),
        (Dialect::Postgres, "SELECT * FROM pg_catalog.pg_authid"),
        (Dialect::MySql, "SELECT * FROM allowed /*M! UNION SELECT * FROM secret */"),
        (Dialect::MySql, "/*M! DROP TABLE IF EXISTS victim, `*/ SELECT 1 AS x #`*/"),
        (Dialect::MySql, "/*M! CREATE USER evil@'%' IDENTIFIED BY '*/ SELECT 1 AS x #'*/"),
        (Dialect::MySql, "SELECT * FROM allowed /*!50000 UNION SELECT * FROM secret */"),
        (Dialect::MySql, "SELECT LOAD_FILE('/etc/passwd') FROM allowed"),
        (Dialect::MySql, "SELECT * FROM allowed INTO OUTFILE '/tmp/x'"),
        (Dialect::MySql, "SELECT id, v FROM allowed WHERE id = 1--\u{a0}.id UNION SELECT * FROM secret"),
        (Dialect::MySql, "SELECT id, v FROM allowed WHERE id = 1--\u{3000}.id UNION SELECT * FROM secret"),
        (Dialect::MySql, "SELECT id, v FROM allowed WHERE id = 1--\u{2003}.id UNION SELECT * FROM secret"),
        (Dialect::MySql, "SELECT id, v FROM allowed WHERE id = 1--\u{85}.id UNION SELECT * FROM secret"),
        (Dialect::MySql, "/*M! SET STATEMENT max_statement_time=0 FOR */ SELECT 1 AS x /*M! , SLEEP(13) */"),
        (Dialect::MySql, "SELECT @v := 'x'"),
        (Dialect::MySql, "SELECT @@datadir, @@plugin_dir"),
        (Dialect::MySql, "SELECT * FROM other.allowed"),
        (Dialect::MySql, "SELECT * FROM ALLOWED"),
        (Dialect::MySql, "SELECT * FROM mysql.user"),
    ] {
        let got = run(d, sql, &t);
        assert!(got.is_err(), "{d:?}: {sql} was accepted as {:?}", got.unwrap().canonical);
    }
}

#[test]
fn table_allow_list_with_cte_scoping() {
    let t = only(&["iris"]);
    assert!(check_sqlite("SELECT * FROM wine", &t).unwrap_err().contains("`wine`"));
    assert!(check_sqlite("SELECT * FROM main.wine", &t).is_err());
    assert!(check_sqlite("SELECT * FROM \"wine\"", &t).is_err());
    assert!(check_sqlite("SELECT * FROM temp.iris", &t).is_err());
    assert!(check_sqlite("SELECT * FROM sqlite_master", &TableAllow::All).is_err());
    assert!(check_sqlite("SELECT * FROM iris WHERE id IN (SELECT target FROM wine)", &t).is_err());
    // A CTE may be named like a forbidden table…
    assert!(check_sqlite("WITH wine AS (SELECT * FROM iris) SELECT * FROM wine", &t).is_ok());
    // …but a non-recursive CTE body does not see its own name: this reads
    // the real table.
    assert!(check_sqlite("WITH wine AS (SELECT * FROM wine) SELECT * FROM wine", &t).is_err());
    // Nor does an outer query see a CTE defined in a subquery.
    assert!(
        check_sqlite("SELECT * FROM (WITH wine AS (SELECT * FROM iris) SELECT * FROM wine), wine", &t)
            .is_err()
    );
    // Later CTEs see earlier ones, not the other way round.
    assert!(
        check_sqlite("WITH a AS (SELECT * FROM iris), b AS (SELECT * FROM a) SELECT * FROM b", &t).is_ok()
    );
    assert!(
        check_sqlite("WITH b AS (SELECT * FROM a), a AS (SELECT * FROM iris) SELECT * FROM b", &t).is_err()
    );
    // Quoted CTE names compare exactly on PostgreSQL.
    let pg = only(&["allowed"]);
    assert!(
        run(Dialect::Postgres, "WITH \"Secret\" AS (SELECT * FROM allowed) SELECT * FROM \"Secret\"", &pg)
            .is_ok()
    );
    assert!(
        run(Dialect::Postgres, "WITH secret AS (SELECT * FROM allowed) SELECT * FROM SECRET", &pg).is_ok()
    );
    // MySQL CTE names must match exactly to count as CTEs.
    assert!(run(Dialect::MySql, "WITH Secret AS (SELECT * FROM allowed) SELECT * FROM secret", &pg).is_err());
}

#[test]
fn deep_or_huge_queries_are_refused_not_crashed() {
    let all = TableAllow::All;
    let long = format!("SELECT 1{}", "+1".repeat(150_000));
    assert!(check_sqlite(&long, &all).unwrap_err().contains("bytes"));
    let deep = format!("SELECT 1{}", "+1".repeat(5_000));
    assert!(check_sqlite(&deep, &all).unwrap_err().contains("levels"));
    let parens = format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000));
    assert!(check_sqlite(&parens, &all).is_err());
}

/// PostgreSQL calls `name(t)` for `t.name` when `t` has no column `name`,
/// and `name(x)` for `(x).name`: a dotted name must be a real column.
#[test]
fn dotted_names_are_columns_or_allowed_functions() {
    let t = only(&["allowed"]);
    for sql in [
        "SELECT ('select quote_literal(v)::tsvector from secret'::text).ts_stat",
        "SELECT (CAST('/etc/passwd' AS TEXT)).pg_read_file",
        "SELECT t.pg_read_file FROM unnest(ARRAY['/etc/hostname']) AS t",
        "SELECT ('data_directory'::text).current_setting",
        "SELECT (2200).pg_import_system_collations",
        "SELECT (1).pg_terminate_backend",
        "SELECT (42::bigint).pg_advisory_lock",
        "SELECT allowed.pg_column_size FROM allowed",
        "SELECT allowed.record_out FROM allowed",
        "SELECT t.hash_record FROM (SELECT 1 AS a) t",
        "SELECT a.v FROM allowed AS a(x, y)",
        "SELECT v.ts_stat FROM allowed",
        "SELECT public.allowed.ts_stat FROM allowed",
        "SELECT g.pg_sleep FROM generate_series(1, 3) AS g",
        "SELECT current_role",
        "SELECT current_schema FROM allowed",
        // Not even an allowed function: it would resolve through the search path.
        "SELECT t.upper FROM allowed t",
        // A FROM subquery cannot see its siblings, a LATERAL one only those
        // before it, an ON clause only its own join tree: a qualifier that
        // PostgreSQL resolves elsewhere must not pass as the sibling's column.
        "SELECT (SELECT y.c FROM (SELECT 1 AS ts_stat) AS t, (SELECT t.ts_stat AS c) AS y) \
         FROM string_to_table('SELECT to_tsvector(s) FROM secret', '|') AS t",
        "SELECT (SELECT y.c FROM allowed a, LATERAL (SELECT t.ts_stat AS c) AS y, (SELECT 1 AS ts_stat) AS t) \
         FROM string_to_table('x', '|') AS t",
        "SELECT (SELECT 1 FROM allowed a JOIN allowed b ON t.pg_column_size IS NOT NULL \
         JOIN (SELECT 1 AS pg_column_size) t ON true LIMIT 1) FROM allowed t",
        // Column lists the guard cannot know exactly are not guessed.
        "SELECT q.pg_column_size FROM (SELECT * FROM (SELECT 1 AS pg_column_size, 2 AS b) a \
         JOIN (SELECT 1 AS pg_column_size) c USING (pg_column_size)) AS q(x, y)",
        "SELECT pg_column_size.pg_column_size FROM allowed a, unnest(ARRAY[a]) AS pg_column_size",
        "SELECT pg_column_size.pg_column_size FROM unnest(ARRAY[1], ARRAY[2]) AS pg_column_size",
    ] {
        let got = run(Dialect::Postgres, sql, &t);
        assert!(got.is_err(), "{sql} was accepted as {:?}", got.unwrap().canonical);
    }
    let e = run(Dialect::Postgres, "SELECT allowed.pg_column_size FROM allowed", &t).unwrap_err();
    assert!(e.contains("its columns: id, v"), "{e}");
    for sql in [
        "SELECT a.id, a.v FROM allowed a WHERE a.id > 1 ORDER BY a.id",
        "SELECT allowed.v FROM allowed",
        "SELECT public.allowed.v FROM public.allowed",
        "SELECT d.n, d.count FROM (SELECT count(*) AS n, count(*) FROM allowed) d",
        "WITH c AS (SELECT id FROM allowed) SELECT c.id FROM c",
        "WITH c(k) AS (SELECT id FROM allowed) SELECT c.k FROM c",
        "SELECT g.g FROM generate_series(1, 3) AS g",
        "SELECT u.x, u.n FROM unnest(ARRAY[1]) WITH ORDINALITY AS u(x, n)",
        "SELECT a.id, x.m FROM allowed a CROSS JOIN LATERAL (SELECT a.id * 2 AS m) x",
        "SELECT a.id FROM allowed a JOIN allowed b ON a.id = b.id JOIN allowed c ON c.id = a.id",
        "SELECT (SELECT b.v FROM allowed b WHERE b.id = a.id) FROM allowed a",
        "SELECT j.key, j.value FROM allowed, jsonb_each('{}'::jsonb) AS j",
        "SELECT a.id FROM allowed a WHERE EXISTS (SELECT 1 FROM allowed b WHERE b.id = a.id)",
        "SELECT s.* FROM (SELECT * FROM allowed) s WHERE s.v <> ''",
    ] {
        if let Err(e) = run(Dialect::Postgres, sql, &t) {
            panic!("{sql}: {e}");
        }
    }
    // MySQL and SQLite have no functional notation: a.b is a column.
    assert!(run(Dialect::MySql, "SELECT a.anything FROM allowed a", &t).is_ok());
    assert!(run(Dialect::MySql, "SELECT CURRENT_USER", &t).is_err());
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

/// A subquery with a WITH of its own: its output columns are not guessed
/// (a CTE there may share a table's name and hide the table's columns).
#[test]
fn inner_with_does_not_lend_table_columns() {
    let t = only(&["allowed"]);
    for sql in [
        "SELECT d.v FROM (WITH allowed AS (SELECT 'x' AS q) SELECT * FROM allowed) d",
        "WITH c AS (WITH allowed AS (SELECT 'x' AS q) SELECT * FROM allowed) SELECT c.v FROM c",
    ] {
        assert!(run(Dialect::Postgres, sql, &t).is_err(), "{sql}");
    }
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

#[test]
fn typed_literals_only_where_the_engine_has_them() {
    let all = TableAllow::All;
    assert!(run(Dialect::Sqlite, "SELECT DATE '2020-01-01'", &all).is_err());
    assert!(run(Dialect::MySql, "SELECT TEXT 'x'", &all).is_err());
    assert!(run(Dialect::MySql, "SELECT DATE '2020-01-01'", &all).is_ok());
    assert!(run(Dialect::Postgres, "SELECT DATE '2020-01-01', INTERVAL '1 day'", &all).is_ok());
}
