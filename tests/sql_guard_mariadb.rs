//! The SQL guard on MariaDB: a policy role alone (the parser switched off,
//! `run_unchecked`) refuses the table reads and writes the policy forbids;
//! each request gets a fresh session, a query the server does not stop is
//! killed by the client, roles are verified at start-up, and through HTTP
//! the parser refuses every query of the adversarial review.

mod common;
#[path = "support/sql_guard.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{OK, Options, assert_status, execute, start};
use serde_json::json;
use sluice::sql::{Access, DataSource, SqlError};
use sqlx::AssertSqlSafe;
use support::{MARKER, engine_refuses, expect, limits, only_allowed};

const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";

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
    assert!(
        !String::from_utf8_lossy(&next.arrow.to_vec().unwrap()).contains("carried"),
        "a user variable survived"
    );
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
    let mut cfg = sluice::app::AppConfig::new(common::data_dir());
    cfg.policies_dir = Some(dir.clone());
    cfg.progress = false;
    cfg.database = Some(my.url());
    let e = match sluice::app::App::build(cfg).await {
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
