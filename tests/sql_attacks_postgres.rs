//! SQL that must not write, against the real local PostgreSQL: every known
//! bypass of read-only guards gets the right verdict, and a checksum of every
//! table (and the list of objects) is the same after. Also PostgreSQL's type
//! mapping, /schema, the read-only role check at start-up, and a database
//! that goes away and comes back. MariaDB: `sql_attacks_mariadb.rs`.

mod common;
#[path = "support/sql_attacks.rs"]
mod support;

use std::path::PathBuf;

use common::{OK, Options, assert_status, client, execute, start};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use support::{expect, policies, run};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn pg_setup(db: &str) -> sqlx::PgPool {
    let admin = sqlx::PgPool::connect(PG_ADMIN)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432 (.ci/run starts it): {e}"));
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
        .execute(&admin)
        .await;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.unwrap();
    let pool = sqlx::PgPool::connect(&format!("postgres://postgres@127.0.0.1:5432/{db}")).await.unwrap();
    for stmt in [
        "CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, balance numeric(12,2))",
        "INSERT INTO accounts (name, balance) VALUES ('alice', 10.50), ('bob', 20.25), ('carol', NULL)",
        "CREATE TABLE secrets (id int, v text)",
        "INSERT INTO secrets VALUES (1, 'hunter2')",
        "CREATE SEQUENCE seq",
        "CREATE TABLE types (i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, t text, vc varchar(10), b bool, \
         d date, tm time, ts timestamp, tz timestamptz, iv interval, j json, jb jsonb, u uuid, by bytea, arr int4[], tarr text[])",
        "INSERT INTO types VALUES (1, 2, 9223372036854775807, 1.5, 2.25, 12345678901234567890.12345678901234567890, 'x', 'y', true, \
         '2024-02-29', '23:59:59.999999', '2024-01-02 03:04:05', '2024-01-02 03:04:05+02', '1 mon 2 days 3 hours', \
         '{\"a\": [1, 2]}', '{\"b\": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', '{1,NULL,3}', '{a,b}')",
        "INSERT INTO types (i2) VALUES (NULL)",
    ] {
        sqlx::query(stmt).execute(&pool).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    pool
}

async fn pg_fingerprint(pool: &sqlx::PgPool) -> String {
    let mut out = String::new();
    for t in ["accounts", "secrets", "types"] {
        let sum: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
        )))
        .fetch_one(pool)
        .await
        .unwrap_or(Some("missing".into()));
        out += &format!("{t}={sum:?};");
    }
    let objects: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(relname::text || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT last_value FROM seq").fetch_one(pool).await.unwrap();
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles").fetch_one(pool).await.unwrap();
    format!("{out}objects={objects:?};seq={seq};roles={roles}")
}

#[tokio::test]
async fn postgresql_bypasses_are_refused_and_nothing_changes() {
    let db = format!("sluice_attack_pg_{}", std::process::id());
    let pool = pg_setup(&db).await;
    let before = pg_fingerprint(&pool).await;
    let s = start(Options {
        database: Some(format!("postgres://postgres@127.0.0.1:5432/{db}")),
        policies: Some(policies()),
        ..Default::default()
    });
    let rejected = [
        "SELECT 1; DROP TABLE accounts",
        "COMMIT; DROP TABLE accounts",
        "sElEcT 1; dRoP tAbLe accounts",
        "SELECT 1 /* harmless */; DELETE FROM accounts",
        "WITH gone AS (DELETE FROM accounts RETURNING *) SELECT * FROM gone",
        "WITH x AS (UPDATE accounts SET balance = 0 RETURNING id) SELECT * FROM x",
        "EXPLAIN ANALYZE DELETE FROM accounts",
        "EXPLAIN SELECT 1",
        "SELECT * INTO stolen FROM accounts",
        "SELECT * FROM accounts FOR UPDATE",
        "SELECT * FROM accounts FOR SHARE",
        "COPY accounts TO '/tmp/sluice-copy'",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "DO $$ BEGIN DELETE FROM accounts; END $$",
        "CALL some_procedure()",
        "SET TRANSACTION READ WRITE",
        "SET statement_timeout = 0",
        "BEGIN",
        "CREATE TABLE t (a int)",
        "ALTER TABLE accounts ADD COLUMN x int",
        "DROP TABLE accounts",
        "TRUNCATE accounts",
        "GRANT ALL ON accounts TO PUBLIC",
        "CREATE ROLE evil SUPERUSER",
        "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE",
        "PREPARE p AS DELETE FROM accounts",
        "LISTEN x",
        "NOTIFY x",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(1, '/tmp/x')",
        "SELECT dblink_exec('dbname=test', 'DROP TABLE accounts')",
        "SELECT * FROM dblink('dbname=test', 'SELECT 1') AS t(a int)",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT nextval('seq')",
        "SELECT setval('seq', 100)",
        "SELECT pg_terminate_backend(1)",
        "SELECT pg_import_system_collations('pg_catalog')",
        "SELECT pg_sleep(5)",
        "SELECT pg_advisory_lock(1)",
        "SELECT query_to_xml('SELECT * FROM secrets', true, false, '')",
        "SELECT table_to_xml('secrets', true, false, '')",
        "SELECT * FROM secrets",
        "SELECT * FROM public.secrets",
        "SELECT * FROM \"secrets\"",
        "SELECT (SELECT v FROM secrets LIMIT 1)",
        "SELECT * FROM accounts UNION SELECT id, v, 0 FROM secrets",
        "WITH s AS (SELECT * FROM secrets) SELECT * FROM s",
    ];
    for sql in rejected {
        expect(&s, sql, "sql_rejected").await;
    }
    // Comments hide nothing from the parser.
    expect(&s, "SELECT 1 AS a -- ; DROP TABLE accounts", "success").await;
    expect(&s, "SELECT 1 AS a /* ; DROP TABLE accounts */", "success").await;
    // Queries that never end are stopped by the statement timeout.
    expect(
        &s,
        "SELECT count(*) FROM generate_series(1, 100000000) a, generate_series(1, 100000000) b",
        "sql_timeout",
    )
    .await;
    expect(
        &s,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        "sql_timeout",
    )
    .await;
    expect(&s, "SELECT * FROM generate_series(1, 5000)", "row_limit").await;
    // A huge value is a verdict, not a crash.
    let v = run(&s, "SELECT repeat('x', 20000000) AS big").await;
    assert!(["success", "memory_limit"].contains(&v["status"].as_str().unwrap()), "{}", v["error"]);
    expect(&s, "SELECT * FROM accounts ORDER BY id", "success").await;
    assert_eq!(pg_fingerprint(&pool).await, before, "the database changed");

    // Types, as a classifier sees them.
    let code = r#"
def classify(df):
    r = df.iloc[0]
    out = {"dtype:" + c: str(t) for c, t in df.dtypes.items()}
    out.update(n=str(r["n"]), i8=int(r["i8"]), ts_tz=str(r["tz"].tzinfo), d=str(r["d"]), tm=str(r["tm"]), by=r["by"].hex(),
               arr=r["arr"], j=r["j"], iv=r["iv"], u=r["u"], null_i2=str(df["i2"].iloc[1]))
    print(out)
    return [str(sorted(out.items()))] * len(df)
"#;
    let (_, v) = execute(&s.base, json!({"sql_query": "SELECT * FROM types ORDER BY i2 NULLS LAST", "classifier_code": code, "policy": "attack"})).await;
    assert_status(&v, "success");
    let out = v["stdout"].as_str().unwrap();
    for want in [
        "'dtype:i2': 'Int64'",
        "'i8': 9223372036854775807",
        "'n': '12345678901234567890.1234567890123456789",
        "'dtype:f4': 'float64'",
        "'dtype:b': 'boolean'",
        "'ts_tz': 'UTC'",
        "'d': '2024-02-29'",
        "'tm': '23:59:59.999999'",
        "'by': '00ff'",
        "'arr': '[1,null,3]'",
        "'u': 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        "'null_i2': '<NA>'",
        "'iv': 'P1M2DT10800S'",
        "'dtype:ts': 'datetime64[us]'",
        "'dtype:tz': 'datetime64[us, UTC]'",
        "'dtype:n': 'object'",
    ] {
        assert!(out.contains(want), "missing {want} in {out}");
    }
    let columns: Vec<&str> =
        v["columns"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(
        columns,
        [
            "integer",
            "integer",
            "integer",
            "float",
            "float",
            "decimal",
            "text",
            "text",
            "boolean",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "interval",
            "json",
            "json",
            "uuid",
            "bytes",
            "array",
            "array"
        ]
    );

    // /schema shows only what the policy allows.
    let r: Value =
        client().get(format!("{}/schema?policy=attack", s.base)).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> =
        r["tables"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"accounts") && names.contains(&"types") && !names.contains(&"secrets"), "{r}");
    let accounts = r["tables"].as_array().unwrap().iter().find(|t| t["name"] == "accounts").unwrap();
    assert_eq!(accounts["columns"][2], json!({"name": "balance", "type": "numeric"}));
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
    pool.close().await;
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
        .execute(&admin)
        .await;
}

/// A policy that demands a read-only database role refuses a user who can
/// write, and accepts the role the README recommends.
#[tokio::test]
async fn a_read_only_role_is_checked_at_start_up() {
    let db = format!("sluice_role_{}", std::process::id());
    let pool = pg_setup(&db).await;
    let role = format!("sluice_reader_{}", std::process::id());
    for stmt in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {db} TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("ALTER ROLE {role} SET default_transaction_read_only = on"),
    ] {
        sqlx::query(AssertSqlSafe(stmt.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("strict-policies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default.toml"), "[database]\nrequire_read_only_role = true\n").unwrap();
    let build = |user: &str| {
        let mut cfg = sluice::app::AppConfig::new(common::data_dir());
        cfg.policies_dir = Some(dir.clone());
        cfg.progress = false;
        cfg.database = Some(format!("postgres://{user}@127.0.0.1:5432/{db}"));
        cfg
    };
    let err = match sluice::app::App::build(build("postgres")).await {
        Ok(_) => panic!("a superuser must be refused under require_read_only_role"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("can write") && err.contains("requires a read-only role"), "{err}");
    assert!(sluice::app::App::build(build(&role)).await.is_ok(), "the read-only role is accepted");
    pool.close().await;
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
        .execute(&admin)
        .await;
    let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}"))).execute(&admin).await;
}

/// A database that goes away answers 503 with a clear message (never a
/// hang), and sluice recovers by itself when it returns. The "network" is a
/// local TCP proxy in front of PostgreSQL that the test cuts and restores
/// (on worker threads: `start` blocks the test's own thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_a_503_then_recovers() {
    use tokio::io::copy_bidirectional;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (up_tx, up_rx) = watch::channel(true);
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut up = up_rx.clone();
            tokio::spawn(async move {
                if !*up.borrow() {
                    return; // refuse: drop the connection at once
                }
                let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await else { return };
                tokio::select! {
                    _ = copy_bidirectional(&mut client, &mut server) => {}
                    _ = up.wait_for(|u| !*u) => {} // cut live connections too
                }
            });
        }
    });
    let s = start(Options {
        database: Some(format!("postgres://postgres@127.0.0.1:{port}/test")),
        policies: Some(policies()),
        ..Default::default()
    });
    let body = json!({"sql_query": "SELECT 1 AS x", "classifier_code": OK});
    let (status, v) = execute(&s.base, body.clone()).await;
    assert_eq!(status, 200, "{v}");

    up_tx.send(false).unwrap();
    let t = std::time::Instant::now();
    let (status, v) = execute(&s.base, body.clone()).await;
    assert_eq!(status, 503, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("database"), "{v}");
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "answered in {:?}", t.elapsed());

    up_tx.send(true).unwrap();
    let mut ok = false;
    for _ in 0..20 {
        let (status, _) = execute(&s.base, body.clone()).await;
        if status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ok, "sluice did not recover when the database came back");
}
