//! The checker against the queries people write and the ones an attacker
//! writes, per dialect: one read-only query, printed back without comments,
//! of bounded size and depth. Tables and names are in `tables.rs`,
//! functions and operators in `functions.rs`.

mod common;

use common::{check_sqlite, only, run};
use sluice_sql_guard::{Dialect, TableAllow};

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
        ("VACUUM INTO '/tmp/x'", "`VACUUM` is not allowed"),
        // Statements sqlparser cannot even read are refused for what they are.
        ("PRAGMA table_info(iris)", "`PRAGMA` is not allowed"),
        ("SELECT * FROM iris WHERE", "does not parse"),
        ("WITH x AS (SELECT 1) SELEC * FROM x", "does not parse"),
        ("SELCT * FROM iris", "does not parse"),
    ] {
        let e = check_sqlite(sql, &all).unwrap_err();
        assert!(e.contains(needle), "{sql}: {e}");
    }
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
fn deep_or_huge_queries_are_refused_not_crashed() {
    let all = TableAllow::All;
    let long = format!("SELECT 1{}", "+1".repeat(150_000));
    assert!(check_sqlite(&long, &all).unwrap_err().contains("bytes"));
    let deep = format!("SELECT 1{}", "+1".repeat(5_000));
    assert!(check_sqlite(&deep, &all).unwrap_err().contains("levels"));
    let parens = format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000));
    assert!(check_sqlite(&parens, &all).is_err());
}

#[test]
fn typed_literals_only_where_the_engine_has_them() {
    let all = TableAllow::All;
    assert!(run(Dialect::Sqlite, "SELECT DATE '2020-01-01'", &all).is_err());
    assert!(run(Dialect::MySql, "SELECT TEXT 'x'", &all).is_err());
    assert!(run(Dialect::MySql, "SELECT DATE '2020-01-01'", &all).is_ok());
    assert!(run(Dialect::Postgres, "SELECT DATE '2020-01-01', INTERVAL '1 day'", &all).is_ok());
}
