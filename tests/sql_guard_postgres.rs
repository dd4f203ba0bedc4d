//! The SQL guard on PostgreSQL: the database runs only the canonical text
//! that was checked; a policy role alone (the parser switched off,
//! `run_unchecked`) refuses the table reads and writes the policy forbids;
//! roles are verified at start-up, session state is reset between requests,
//! a query the server does not stop is dropped by the client; and through
//! HTTP the parser refuses every query of the adversarial review.

mod common;
#[path = "support/sql_guard.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{OK, Options, assert_status, client, execute, start};
use serde_json::{Value, json};
use sluice::sql::{Access, DataSource, SqlError};
use sqlx::AssertSqlSafe;
use support::{MARKER, engine_refuses, expect, leaked, limits, only_allowed, policies_with, run_policy};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

struct Pg {
    db: String,
    /// Reads `allowed` only.
    reader: String,
    /// Can also read `secret`.
    nosy: String,
    /// Can write `allowed`.
    writer: String,
    admin: sqlx::PgPool,
    data_directory: String,
}

async fn pg_setup(tag: &str) -> Pg {
    let admin =
        sqlx::PgPool::connect(PG_ADMIN).await.expect("PostgreSQL on 127.0.0.1:5432 (.ci/run starts it)");
    let pid = std::process::id();
    let db = format!("sluice_guard_{tag}_{pid}");
    let (reader, nosy, writer) =
        (format!("sluice_r_{tag}_{pid}"), format!("sluice_n_{tag}_{pid}"), format!("sluice_w_{tag}_{pid}"));
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
        .execute(&admin)
        .await;
    for r in [&reader, &nosy, &writer] {
        let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}"))).execute(&admin).await;
    }
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.unwrap();
    let pool = sqlx::PgPool::connect(&format!("postgres://postgres@127.0.0.1:5432/{db}")).await.unwrap();
    for stmt in [
        "CREATE TABLE allowed (id int, v text)".to_string(),
        "INSERT INTO allowed VALUES (1, 'ok'), (2, 'fine')".into(),
        "CREATE TABLE secret (id int, s text)".into(),
        format!("INSERT INTO secret VALUES (1, '{MARKER}')"),
        "CREATE TABLE \"ALLOWED\" (id int, s text)".into(),
        format!("INSERT INTO \"ALLOWED\" VALUES (1, '{MARKER}')"),
        "CREATE SCHEMA other".into(),
        "CREATE TABLE other.allowed (id int, s text)".into(),
        format!("INSERT INTO other.allowed VALUES (1, '{MARKER}')"),
        format!("SELECT lo_from_bytea(424242, '{MARKER}'::bytea)"),
        format!("CREATE ROLE {reader}"),
        format!("GRANT SELECT ON allowed TO {reader}"),
        format!("CREATE ROLE {nosy}"),
        format!("GRANT SELECT ON allowed, secret TO {nosy}"),
        format!("CREATE ROLE {writer}"),
        format!("GRANT SELECT, INSERT ON allowed TO {writer}"),
    ] {
        sqlx::query(AssertSqlSafe(stmt.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    pool.close().await;
    let data_directory: String =
        sqlx::query_scalar("SELECT current_setting('data_directory')").fetch_one(&admin).await.unwrap();
    Pg { db, reader, nosy, writer, admin, data_directory }
}

impl Pg {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.db)
    }

    async fn drop(self) {
        let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db)))
            .execute(&self.admin)
            .await;
        for r in [&self.reader, &self.nosy, &self.writer] {
            let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}"))).execute(&self.admin).await;
        }
    }
}

#[tokio::test]
async fn postgres_role_alone_refuses_what_the_policy_forbids() {
    let pg = pg_setup("engine").await;
    // The login is a superuser: everything below is the role's doing.
    let source = DataSource::connect(&pg.url(), 2).await.unwrap();
    let tables = only_allowed();
    let access = Access { tables: &tables, role: Some(&pg.reader) };
    for sql in [
        "SELECT * FROM secret",
        "SELECT * FROM allowed UNION ALL TABLE secret",
        "SELECT x::text AS x FROM LATERAL query_to_xml('select * from secret', true, false, '') x",
        "SELECT U&\"quer\\0079_to_xml\"('select * from secret', true, false, '')::text",
        "SELECT 1 #--'\n 0, s FROM secret --' FROM allowed",
        "WITH \"Secret\" AS (SELECT * FROM allowed) SELECT * FROM secret",
        "SELECT * FROM other.allowed",
        "SELECT * FROM \"ALLOWED\"",
        "SELECT lo_get(424242)",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT current_setting('data_directory')",
        "SELECT rolpassword FROM pg_authid",
        "SELECT pg_logical_emit_message(false, 'x', 'y')",
        "SELECT * FROM pg_create_physical_replication_slot('sluice_slot')",
        "INSERT INTO allowed VALUES (3, 'x')",
        "SELECT 1; DROP TABLE allowed",
        // Functional notation reaches any one-argument function.
        "SELECT ('select quote_literal(s)::tsvector from secret'::text).ts_stat",
        "SELECT t.pg_read_file FROM unnest(ARRAY['/etc/hostname']) AS t",
        "SELECT (2200).pg_import_system_collations",
    ] {
        engine_refuses(&source, access, sql).await;
    }
    // Dumps of the whole database hold only what the role may read.
    for sql in [
        "SELECT database_to_xml_and_xmlschema(true, false, '')::text",
        "SELECT name, setting FROM pg_show_all_settings()",
    ] {
        let r = source.run_unchecked(sql, &[], access, limits(5)).await;
        assert!(!leaked(&r), "{sql}");
        if let Ok(rows) = &r {
            assert!(
                !String::from_utf8_lossy(&rows.arrow.to_vec().unwrap()).contains(&pg.data_directory),
                "{sql} shows paths"
            );
        }
    }
    // Session state that outlives a rollback is reset between requests.
    let r = source.run_unchecked("SELECT pg_try_advisory_lock(4242)", &[], access, limits(5)).await;
    assert!(r.is_ok(), "the role may take an advisory lock: {r:?}");
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242")
            .fetch_one(&pg.admin)
            .await
            .unwrap();
    assert_eq!(held, 0, "an advisory lock survived its request");
    let r =
        source.run_unchecked("SELECT id, v FROM allowed ORDER BY id", &[], access, limits(5)).await.unwrap();
    assert_eq!(r.row_count, 2);
    // The client drops a connection whose query outlives the deadline.
    let t = Instant::now();
    let e =
        source.run_unchecked("SELECT 1 AS x FROM pg_sleep(30)", &[], access, limits(1)).await.unwrap_err();
    assert!(matches!(e, SqlError::Timeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    pg.drop().await;
}

#[tokio::test]
async fn postgres_roles_are_verified_at_start_up() {
    let pg = pg_setup("verify").await;
    let build = |policy: &str| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "guard-policies-{}-{}",
            std::process::id(),
            policy.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("default.toml"), "").unwrap();
        std::fs::write(dir.join("restricted.toml"), policy).unwrap();
        let mut cfg = sluice::app::AppConfig::new(common::data_dir());
        cfg.policies_dir = Some(dir);
        cfg.progress = false;
        cfg.database = Some(pg.url());
        cfg
    };
    let refused = |e: Result<std::sync::Arc<sluice::app::App>, sluice::app::StartError>| match e {
        Ok(_) => panic!("start-up accepted a role that does not match its policy"),
        Err(e) => e.to_string(),
    };
    let tables = "[tables]\nallow = [\"allowed\"]\n";
    let e = refused(
        sluice::app::App::build(build(&format!("{tables}[database]\nrole = \"{}\"\n", pg.nosy))).await,
    );
    assert!(e.contains("can read secret") && e.contains("restricted"), "{e}");
    let e = refused(
        sluice::app::App::build(build(&format!("{tables}[database]\nrole = \"{}\"\n", pg.writer))).await,
    );
    assert!(e.contains("can write allowed"), "{e}");
    let e = refused(
        sluice::app::App::build(build(&format!("{tables}[database]\nrole = \"no_such_role_x\"\n"))).await,
    );
    assert!(e.contains("cannot switch"), "{e}");
    let e =
        refused(sluice::app::App::build(build(&format!("{tables}[database]\nrequire_role = true\n"))).await);
    assert!(e.contains("require_role") && e.contains("only sluice's parser"), "{e}");
    let app = sluice::app::App::build(build(&format!(
        "{tables}[database]\nrole = \"{}\"\nrequire_role = true\n",
        pg.reader
    )))
    .await
    .expect("the reader role matches the policy");
    let admin = sluice::app::Caller::local("test");
    let details = sluice::app::grant::<sluice::app::act::ReadServerDetails>(&admin).unwrap();
    let (_, ready) = app.readiness(Some(&details)).await;
    let guards = ready["database"]["sql_guards"].as_array().unwrap();
    let by_policy = |p: &str| guards.iter().find(|g| g["policy"] == p).unwrap().clone();
    assert_eq!(by_policy("restricted")["tables"], true, "{ready}");
    assert_eq!(by_policy("default")["tables"], false, "no role: a degraded layer, said so: {ready}");
    pg.drop().await;
}

/// Through HTTP on PostgreSQL with a role: every reviewed query is refused
/// by the parser first, and legitimate queries still run.
#[tokio::test]
async fn postgres_restricted_policy_over_http() {
    let pg = pg_setup("http").await;
    // Functions and an operator shadowing built-ins (an exact-type overload,
    // a name PostgreSQL 15 lacks), made before the server reads its
    // catalogue. Later, the default policy (superuser login, no role) shows
    // that the guard, not a role, keeps them from running.
    let admin_db = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    for f in ["lower(x int)", "log2(x int)", "substring(a int, b int, c int)", "upper(a allowed)"] {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE FUNCTION public.{f} RETURNS text LANGUAGE sql AS $$ SELECT s FROM secret LIMIT 1 $$"
        )))
        .execute(&admin_db)
        .await
        .unwrap();
    }
    sqlx::query("CREATE FUNCTION public.leak_plus(a text, b text) RETURNS text LANGUAGE sql AS $$ SELECT s FROM secret LIMIT 1 $$")
        .execute(&admin_db)
        .await
        .unwrap();
    sqlx::query("CREATE OPERATOR public.+ (LEFTARG = text, RIGHTARG = text, FUNCTION = public.leak_plus)")
        .execute(&admin_db)
        .await
        .unwrap();
    admin_db.close().await;
    let s = start(Options {
        database: Some(pg.url()),
        policies: Some(policies_with(
            "restricted",
            &format!(
                "[tables]\nallow = [\"allowed\"]\n[database]\nrole = \"{}\"\nrequire_role = true\n",
                pg.reader
            ),
        )),
        ..Default::default()
    });
    for sql in [
        "SELECT * FROM allowed UNION ALL TABLE secret",
        "SELECT x::text AS x FROM LATERAL query_to_xml('select * from secret',true,false,'') x",
        "SELECT database_to_xml_and_xmlschema(true,false,'')::text",
        "SELECT U&\"quer\\0079_to_xml\"('select * from secret',true,false,'')::text",
        "SELECT 1 #--'\n 0, s FROM secret --' FROM allowed",
        "SELECT 1 >--'\n 0, s FROM secret --' FROM allowed",
        "SELECT 1 |/*' */ 0, s FROM secret --' FROM allowed",
        "WITH \"Secret\" AS (SELECT * FROM allowed) SELECT * FROM secret",
        "SELECT * FROM other.allowed",
        "SELECT * FROM \"ALLOWED\"",
        "SELECT pg_advisory_lock(1) FROM generate_series(1, 500)",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
        "SELECT lo_get(424242)",
        "SELECT txid_current()",
        "SELECT pg_logical_emit_message(false, 'x', repeat('x', 50000000))",
        "SELECT current_setting('data_directory')",
        "SELECT * FROM pg_show_all_settings()",
        "SELECT ('select quote_literal(s)::tsvector from secret'::text).ts_stat",
        "SELECT (CAST('/etc/passwd' AS TEXT)).pg_read_file",
        "SELECT t.pg_read_file FROM unnest(ARRAY['/etc/hostname']) AS t",
        "SELECT allowed.ts_stat FROM allowed",
        "SELECT (2200).pg_import_system_collations",
        "SELECT current_role",
        "SELECT (SELECT y.c FROM (SELECT 1 AS ts_stat) AS t, (SELECT t.ts_stat AS c) AS y) \
         FROM string_to_table('SELECT to_tsvector(s) FROM secret', '|') AS t",
    ] {
        let v = expect(&s, "restricted", sql, "sql_rejected").await;
        assert!(v["error"]["reason"].as_str().is_some_and(|r| r.len() > 20), "{sql}: {v}");
    }
    for sql in [
        "SELECT lower(1) AS x",
        "SELECT log2(1) AS x",
        "SELECT SUBSTRING(id, 1, 1) AS x FROM allowed",
        "SELECT t.upper AS x FROM allowed t",
        "SELECT v + v AS x FROM allowed",
    ] {
        let v = run_policy(&s, "default", sql).await;
        assert_ne!(v["status"], "success", "{sql}: {v}");
    }
    for sql in [
        "SELECT id, upper(v) AS v FROM allowed ORDER BY id",
        "WITH a AS (SELECT * FROM allowed) SELECT count(*) AS n, string_agg(v, ',' ORDER BY v) FROM a",
        "SELECT g AS n FROM generate_series(1, 3) AS g",
        "SELECT id FROM allowed WHERE v = $1",
        "SELECT a.id, a.v FROM allowed AS a WHERE a.id > 0 ORDER BY a.id",
        "SELECT d.n FROM (SELECT count(*) AS n FROM allowed) AS d",
    ] {
        let (status, v) = execute(
            &s.base,
            json!({"sql_query": sql, "params": if sql.contains("$1") { json!(["ok"]) } else { json!([]) },
                   "classifier_code": OK, "policy": "restricted"}),
        )
        .await;
        assert_eq!(status, 200, "{sql}: {v}");
        assert_status(&v, "success");
    }
    let schema: Value = client()
        .get(format!("{}/schema?policy=restricted", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> =
        schema["tables"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["allowed"], "{schema}");
    assert!(schema["functions"].as_array().unwrap().iter().any(|f| f == "string_agg"));
    drop(s);
    pg.drop().await;
}
