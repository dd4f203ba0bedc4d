//! The checker's table allow-list and names: CTE scoping, dotted names
//! PostgreSQL could read as function calls, and column lists.

mod common;

use common::{check_sqlite, only, run};
use sluice_sql_guard::{Dialect, TableAllow};

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
