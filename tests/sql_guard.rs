//! The SQL guard's three rules, against the real engines: the database runs
//! only the canonical text that was checked; the parser refuses every query
//! of the adversarial review; and the engine-side layer alone (SQLite's
//! authorizer, a PostgreSQL role, a MariaDB role) refuses the same table
//! reads and writes when the parser is switched off (`run_unchecked`).
//! Roles are verified at start-up, sessions are reset between requests, and
//! a query the server does not stop is killed by the client.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Options, Server, assert_status, client, execute, start};
use serde_json::{Value, json};
use sluice::policy::{TableAllow, TableRef};
use sluice::sql::{Access, DataSource, FetchLimits, Rows, SqlError};
use sqlx::AssertSqlSafe;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";
const OK: &str = "def classify(df):\n    return [0] * len(df)\n";
/// The value in `secret` that must never come back.
const MARKER: &str = "hunter2";

fn only_allowed() -> TableAllow {
    TableAllow::Only(vec![TableRef::parse("allowed").unwrap()])
}

fn limits(seconds: u64) -> FetchLimits {
    FetchLimits { max_rows: 1000, max_bytes: 0, timeout: Duration::from_secs(seconds) }
}

/// Everything a result carries, as text, to search for the marker.
fn leaked(r: &Result<Rows, SqlError>) -> bool {
    match r {
        Ok(rows) => String::from_utf8_lossy(&rows.arrow_ipc).contains(MARKER),
        Err(_) => false,
    }
}

async fn engine_refuses(source: &DataSource, access: Access<'_>, sql: &str) -> String {
    let r = source.run_unchecked(sql, &[], access, limits(5)).await;
    assert!(!leaked(&r), "the engine let {sql} read the secret");
    match r {
        Err(e) => e.to_string(),
        Ok(rows) => panic!("the engine ran {sql} ({} rows)", rows.row_count),
    }
}

fn policies_with(name: &str, body: &str) -> PathBuf {
    let dir = common::policies_dir();
    std::fs::write(dir.join(format!("{name}.toml")), body).unwrap();
    dir
}

async fn run_policy(s: &Server, policy: &str, sql: &str) -> Value {
    let (status, v) =
        execute(&s.base, json!({"sql_query": sql, "classifier_code": OK, "policy": policy})).await;
    assert_eq!(status, 200, "{sql}: {v}");
    assert!(!v.to_string().contains(MARKER), "{sql} leaked the secret: {v}");
    v
}

async fn expect(s: &Server, policy: &str, sql: &str, status: &str) -> Value {
    let v = run_policy(s, policy, sql).await;
    assert_eq!(v["status"], status, "{sql}: {}", v["error"]);
    assert_status(&v, status);
    v
}

// -------------------------------------------------------------------- SQLite

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

// ---------------------------------------------------------------- PostgreSQL

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
                !String::from_utf8_lossy(&rows.arrow_ipc).contains(&pg.data_directory),
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
        let mut cfg = sluice::service::AppConfig::new(common::data_dir());
        cfg.policies_dir = Some(dir);
        cfg.progress = false;
        cfg.database = Some(pg.url());
        cfg
    };
    let refused = |e: Result<sluice::service::App, sluice::service::StartError>| match e {
        Ok(_) => panic!("start-up accepted a role that does not match its policy"),
        Err(e) => e.to_string(),
    };
    let tables = "[tables]\nallow = [\"allowed\"]\n";
    let e = refused(
        sluice::service::App::build(build(&format!("{tables}[database]\nrole = \"{}\"\n", pg.nosy))).await,
    );
    assert!(e.contains("can read secret") && e.contains("restricted"), "{e}");
    let e = refused(
        sluice::service::App::build(build(&format!("{tables}[database]\nrole = \"{}\"\n", pg.writer))).await,
    );
    assert!(e.contains("can write allowed"), "{e}");
    let e = refused(
        sluice::service::App::build(build(&format!("{tables}[database]\nrole = \"no_such_role_x\"\n"))).await,
    );
    assert!(e.contains("cannot switch"), "{e}");
    let e = refused(
        sluice::service::App::build(build(&format!("{tables}[database]\nrequire_role = true\n"))).await,
    );
    assert!(e.contains("require_role") && e.contains("only sluice's parser"), "{e}");
    let app = sluice::service::App::build(build(&format!(
        "{tables}[database]\nrole = \"{}\"\nrequire_role = true\n",
        pg.reader
    )))
    .await
    .expect("the reader role matches the policy");
    let (_, ready) = app.readiness().await;
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

// ------------------------------------------------------------------ MariaDB

struct My {
    db: String,
    login: String,
    reader: String,
    admin: sqlx::MySqlPool,
}

async fn my_setup(tag: &str) -> My {
    let admin =
        sqlx::MySqlPool::connect(MY_ADMIN).await.expect("MariaDB on 127.0.0.1:3306 (.ci/run starts it)");
    let pid = std::process::id();
    let db = format!("sluice_guard_{tag}_{pid}");
    let (login, reader, writer) =
        (format!("sl_login_{tag}_{pid}"), format!("sl_reader_{tag}_{pid}"), format!("sl_writer_{tag}_{pid}"));
    for stmt in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("DROP DATABASE IF EXISTS {db}_other"),
        format!("DROP USER IF EXISTS '{login}'@'%'"),
        format!("DROP ROLE IF EXISTS {reader}"),
        format!("DROP ROLE IF EXISTS {writer}"),
        format!("CREATE DATABASE {db}"),
        format!("CREATE DATABASE {db}_other"),
        format!("CREATE TABLE {db}.allowed (id INT, v TEXT)"),
        format!("INSERT INTO {db}.allowed VALUES (1, 'ok'), (2, 'fine')"),
        format!("CREATE TABLE {db}.secret (id INT, s TEXT)"),
        format!("INSERT INTO {db}.secret VALUES (1, '{MARKER}')"),
        format!("CREATE TABLE {db}.ALLOWED (id INT, s TEXT)"),
        format!("INSERT INTO {db}.ALLOWED VALUES (1, '{MARKER}')"),
        format!("CREATE TABLE {db}.victim (id INT)"),
        format!("CREATE TABLE {db}_other.allowed (id INT, s TEXT)"),
        format!("INSERT INTO {db}_other.allowed VALUES (1, '{MARKER}')"),
        format!("CREATE USER '{login}'@'%'"),
        format!("CREATE ROLE {reader}"),
        format!("GRANT SELECT ON {db}.allowed TO {reader}"),
        format!("CREATE ROLE {writer}"),
        format!("GRANT SELECT, INSERT, DROP ON {db}.* TO {writer}"),
        format!("GRANT {reader} TO '{login}'@'%'"),
        format!("GRANT {writer} TO '{login}'@'%'"),
        format!("SET DEFAULT ROLE {reader} FOR '{login}'@'%'"),
    ] {
        sqlx::query(AssertSqlSafe(stmt.clone()))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    My { db, login, reader, admin }
}

impl My {
    fn url(&self) -> String {
        format!("mysql://{}@127.0.0.1:3306/{}", self.login, self.db)
    }

    async fn drop(self) {
        let writer = self.reader.replace("sl_reader_", "sl_writer_");
        for stmt in [
            format!("DROP DATABASE IF EXISTS {}", self.db),
            format!("DROP DATABASE IF EXISTS {}_other", self.db),
            format!("DROP USER IF EXISTS '{}'@'%'", self.login),
            format!("DROP ROLE IF EXISTS {}", self.reader),
            format!("DROP ROLE IF EXISTS {writer}"),
            "DROP USER IF EXISTS 'sluice_evil'@'%'".into(),
        ] {
            let _ = sqlx::query(AssertSqlSafe(stmt)).execute(&self.admin).await;
        }
    }
}

#[tokio::test]
async fn mariadb_role_alone_refuses_what_the_policy_forbids() {
    let my = my_setup("engine").await;
    let source = DataSource::connect(&my.url(), 2).await.unwrap();
    let tables = only_allowed();
    let access = Access { tables: &tables, role: Some(&my.reader) };
    let outfile = format!("/tmp/sluice-outfile-{}", std::process::id());
    for sql in [
        "SELECT * FROM secret".to_string(),
        "SELECT * FROM allowed /*M! UNION SELECT * FROM secret */".into(),
        "SELECT id, v FROM allowed WHERE id = 1--\u{a0}.id UNION SELECT * FROM secret".into(),
        format!("SELECT * FROM {}_other.allowed", my.db),
        "SELECT * FROM ALLOWED".into(),
        "DROP TABLE victim".into(),
        "/*M! DROP TABLE IF EXISTS victim, `*/ SELECT 1 AS x #`*/".into(),
        "CREATE USER 'sluice_evil'@'%' IDENTIFIED BY 'x'".into(),
        format!("SELECT * FROM allowed INTO OUTFILE '{outfile}'"),
        "SELECT * FROM mysql.user".into(),
    ] {
        engine_refuses(&source, access, &sql).await;
    }
    // A stored function named like an allowed one that MariaDB has no
    // built-in for, which the login may execute: the parser refuses the call.
    sqlx::query(AssertSqlSafe(format!(
        "CREATE FUNCTION {}.any_value(a TEXT) RETURNS TEXT READS SQL DATA RETURN (SELECT s FROM {}.secret LIMIT 1)",
        my.db, my.db
    )))
    .execute(&my.admin)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "GRANT EXECUTE ON FUNCTION {}.any_value TO '{}'@'%'",
        my.db, my.login
    )))
    .execute(&my.admin)
    .await
    .unwrap();
    let e = source.check("SELECT any_value(v) AS x FROM allowed", &tables).await.unwrap_err();
    assert!(e.0.contains("stored function"), "{e}");
    let load =
        source.run_unchecked("SELECT LOAD_FILE('/etc/hostname') AS f", &[], access, limits(5)).await.unwrap();
    assert_eq!(load.row_count, 1, "LOAD_FILE runs but reads nothing without FILE");
    assert!(!std::path::Path::new(&outfile).exists());
    let victim: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_name = 'victim'",
        my.db
    )))
    .fetch_one(&my.admin)
    .await
    .unwrap();
    assert_eq!(victim, 1, "the victim table was dropped");
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE user = 'sluice_evil'")
        .fetch_one(&my.admin)
        .await
        .unwrap();
    assert_eq!(users, 0, "a user was created");
    // Each request gets a fresh session: user variables do not carry over.
    source.run_unchecked("SELECT @v := 'carried' AS x", &[], access, limits(5)).await.unwrap();
    let next = source.run_unchecked("SELECT @v AS x", &[], access, limits(5)).await.unwrap();
    assert!(!String::from_utf8_lossy(&next.arrow_ipc).contains("carried"), "a user variable survived");
    // A query the server does not stop is killed by the client.
    let t = Instant::now();
    let e = source
        .run_unchecked(
            "SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(20) AS x",
            &[],
            access,
            limits(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::Timeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    let r = source.run_unchecked("SELECT id, v FROM allowed", &[], access, limits(5)).await.unwrap();
    assert_eq!(r.row_count, 2);
    my.drop().await;
}

#[tokio::test]
async fn mariadb_roles_are_verified_and_enforced_over_http() {
    let my = my_setup("http").await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("guard-my-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default.toml"), "").unwrap();
    let writer = my.reader.replace("sl_reader_", "sl_writer_");
    std::fs::write(
        dir.join("restricted.toml"),
        format!("[tables]\nallow = [\"allowed\"]\n[database]\nrole = \"{writer}\"\n"),
    )
    .unwrap();
    let mut cfg = sluice::service::AppConfig::new(common::data_dir());
    cfg.policies_dir = Some(dir.clone());
    cfg.progress = false;
    cfg.database = Some(my.url());
    let e = match sluice::service::App::build(cfg).await {
        Ok(_) => panic!("a role that can write and read everything was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("grants more than SELECT") && e.contains("secret"), "{e}");

    std::fs::write(
        dir.join("restricted.toml"),
        format!(
            "[tables]\nallow = [\"allowed\"]\n[database]\nrole = \"{}\"\nrequire_role = true\n",
            my.reader
        ),
    )
    .unwrap();
    let s = start(Options { database: Some(my.url()), policies: Some(dir), ..Default::default() });
    for sql in [
        "SELECT * FROM allowed /*M! UNION SELECT * FROM secret */",
        "/*M! DROP TABLE IF EXISTS victim, `*/ SELECT 1 AS x #`*/",
        "/*M! CREATE USER evil@'%' IDENTIFIED BY '*/ SELECT 1 AS x #'*/",
        "SELECT LOAD_FILE('/etc/passwd')",
        "SELECT * FROM allowed INTO OUTFILE '/tmp/sluice-x'",
        "SELECT id, v FROM allowed WHERE id = 1--\u{a0}.id UNION SELECT * FROM secret",
        "SELECT id, v FROM allowed WHERE id = 1--\u{3000}.id UNION SELECT * FROM secret",
        "SELECT id, v FROM allowed WHERE id = 1--\u{2003}.id UNION SELECT * FROM secret",
        "SELECT id, v FROM allowed WHERE id = 1--\u{85}.id UNION SELECT * FROM secret",
        "/*M! SET STATEMENT max_statement_time=0 FOR */ SELECT 1 AS x /*M! , SLEEP(13) */",
        "SELECT @v := 'x'",
        "SELECT @@datadir, @@plugin_dir",
        "SELECT * FROM ALLOWED",
        "SELECT CURRENT_USER",
    ] {
        expect(&s, "restricted", sql, "sql_rejected").await;
    }
    let v = expect(&s, "restricted", "SELECT regexp_like(v, 'o') AS m FROM allowed", "sql_rejected").await;
    assert!(v["error"]["reason"].as_str().unwrap().contains("stored function"), "{v}");
    let sql = format!("SELECT * FROM {}_other.allowed", my.db);
    expect(&s, "restricted", &sql, "sql_rejected").await;
    let v = expect(
        &s,
        "restricted",
        "SELECT id, CONCAT(v, '!') AS v FROM allowed WHERE id > ? ORDER BY id",
        "sql_error",
    )
    .await;
    assert!(v["error"]["message"].as_str().unwrap().contains("placeholder"), "{v}");
    let (_, v) = execute(
        &s.base,
        json!({"sql_query": "SELECT id, CONCAT(v, '!') AS v FROM allowed WHERE id > ? ORDER BY id", "params": [0],
               "classifier_code": OK, "policy": "restricted"}),
    )
    .await;
    assert_status(&v, "success");
    assert_eq!(v["row_count"], 2);
    drop(s);
    my.drop().await;
}
