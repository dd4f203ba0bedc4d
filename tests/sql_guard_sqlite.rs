//! The SQL guard on SQLite: SQLite's authorizer alone (the parser switched
//! off, `run_unchecked`) refuses the table reads and writes a policy forbids,
//! and through HTTP the parser refuses every query of the adversarial review
//! while what the policy allows still runs. The other engines:
//! `sql_guard_postgres.rs`, `sql_guard_mariadb.rs`.

mod common;
#[path = "support/sql_guard.rs"]
mod support;

use std::path::{Path, PathBuf};

use common::{Options, start};
use sluice::sql::{Access, DataSource};
use support::{MARKER, engine_refuses, expect, limits, only_allowed, policies_with};

fn sqlite_db(dir: &Path, tag: &str) -> PathBuf {
    let path = dir.join(format!("guard-{tag}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE allowed (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO allowed VALUES (1, 'ok'), (2, 'fine');
         CREATE TABLE secret (id INTEGER, v TEXT); INSERT INTO secret VALUES (1, '{MARKER}');
         CREATE VIEW allowed_view AS SELECT * FROM secret;"
    ))
    .unwrap();
    path
}

#[tokio::test]
async fn sqlite_authorizer_alone_refuses_what_the_policy_forbids() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let db = sqlite_db(&dir, "engine");
    let source = DataSource::connect(&format!("sqlite://{}", db.display()), 2).await.unwrap();
    let tables = only_allowed();
    let access = Access { tables: &tables, role: None };
    let planted = dir.join(format!("vacuum-{}.sqlite", std::process::id()));
    let audit = common::data_dir().join("audit.sqlite");
    for sql in [
        "SELECT * FROM secret",
        "SELECT count(*) FROM secret",
        "SELECT EXISTS (SELECT 1 FROM secret)",
        "WITH allowed AS (SELECT * FROM secret) SELECT * FROM allowed",
        "WITH allowed_view AS (SELECT v FROM secret) SELECT * FROM allowed_view",
        "SELECT * FROM allowed UNION ALL SELECT * FROM secret",
        "SELECT * FROM allowed_view",
        "SELECT * FROM pragma_table_info('secret')",
        "SELECT * FROM sqlite_schema",
        "SELECT count(*) FROM sqlite_schema",
        "SELECT count(*) FROM sqlite_master",
        "SELECT load_extension('/tmp/x.so')",
        "SELECT randomblob(10)",
        "PRAGMA query_only = 0",
        "INSERT INTO allowed VALUES (3, 'x')",
        "DROP TABLE secret",
        "BEGIN",
        "SELECT 1 /* a comment the parser would have dropped */",
        "SELECT \"no such column\"",
        &format!("ATTACH '{}' AS a", audit.display()),
        &format!("SELECT * FROM allowed; ATTACH '{}' AS a", audit.display()),
        &format!("VACUUM INTO '{}'", planted.display()),
        &format!("SELECT 1; VACUUM INTO '{}'", planted.display()),
        "SELECT $1::q(--) AS z, * FROM secret /*\n) AS z FROM allowed",
    ] {
        let e = engine_refuses(&source, access, sql).await;
        assert!(!e.is_empty(), "{sql}");
    }
    assert!(!planted.exists(), "VACUUM INTO wrote a file");
    let e = engine_refuses(&source, access, "SELECT * FROM secret").await;
    assert!(e.contains("refused reading table `secret`"), "{e}");
    // What the policy allows still runs on the engine alone.
    for sql in [
        "SELECT * FROM allowed",
        "SELECT count(*) FROM allowed",
        "WITH c AS (SELECT id FROM allowed) SELECT count(*) FROM c",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 3) SELECT count(*) FROM r",
        "SELECT value FROM json_each('[1, 2]')",
        "SELECT upper(v), v LIKE 'o%', '{\"a\": 1}' ->> '$.a' FROM allowed",
    ] {
        let r = source.run_unchecked(sql, &[], access, limits(5)).await;
        assert!(r.is_ok(), "{sql}: {:?}", r.err());
    }
    // A placeholder count that differs from params is an error, not NULLs.
    let e = source
        .run_unchecked("SELECT * FROM allowed WHERE id = ?", &[], access, limits(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 placeholder") && e.contains("0 value"), "{e}");
}

/// Through HTTP on SQLite: the reviewed queries are refused, the view and
/// CTE tricks too, and what is allowed runs.
#[tokio::test]
async fn sqlite_restricted_policy_over_http() {
    let db = sqlite_db(Path::new(env!("CARGO_TARGET_TMPDIR")), "http");
    let s = start(Options {
        database: Some(format!("sqlite://{}", db.display())),
        policies: Some(policies_with(
            "restricted",
            "[tables]\nallow = [\"allowed\"]\n[database]\nrequire_role = true\n",
        )),
        ..Default::default()
    });
    for sql in [
        "SELECT $1::q(--) AS z, * FROM secret /*\n) AS z FROM allowed",
        "SELECT 1; ATTACH 'x' AS a",
        "SELECT * FROM allowed; VACUUM INTO '/tmp/sluice-vacuum'",
        "SELECT * FROM allowed_view",
        "WITH allowed AS (SELECT * FROM secret) SELECT * FROM allowed",
        "SELECT * FROM main.secret",
        "SELECT count(*) FROM secret",
        "SELECT * FROM sqlite_master",
        "SELECT - -1 FROM allowed",
    ] {
        expect(&s, "restricted", sql, "sql_rejected").await;
    }
    // Huge or deeply nested queries are refused, never a crashed server.
    let deep = format!("SELECT 1{} AS x", "+1".repeat(49_000));
    let v = expect(&s, "restricted", &deep, "sql_rejected").await;
    assert!(v["error"]["reason"].as_str().unwrap().contains("levels deep"), "{}", v["error"]);
    let huge = format!("SELECT 1{} AS x", "+1".repeat(150_000));
    let v = expect(&s, "restricted", &huge, "sql_rejected").await;
    assert!(v["error"]["reason"].as_str().unwrap().contains("bytes"), "{}", v["error"]);
    let v = expect(&s, "restricted", "SELECT id FROM allowed WHERE v = ?", "sql_error").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("placeholder"), "{v}");
    let v = expect(&s, "restricted", "select  id , v from ALLOWED -- comment\n order by id", "success").await;
    assert_eq!(v["row_count"], 2);
    // The hint for an unknown column names only tables the policy allows.
    let v = expect(&s, "restricted", "SELECT nope FROM allowed WHERE 'secret' <> ''", "sql_error").await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("columns of allowed") && !msg.contains("columns of secret"), "{msg}");
}
