//! SQL that must not write, against the real local MariaDB: every known
//! bypass of read-only guards gets the right verdict, and a checksum of every
//! table (and the list of objects) is the same after. Also MariaDB's type
//! mapping. PostgreSQL: `sql_attacks_postgres.rs`.

mod common;
#[path = "support/sql_attacks.rs"]
mod support;

use common::{Options, assert_status, execute, start};
use serde_json::json;
use sqlx::AssertSqlSafe;
use support::{expect, policies, run};

const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";

async fn my_setup(db: &str) -> sqlx::MySqlPool {
    let admin = sqlx::MySqlPool::connect(MY_ADMIN)
        .await
        .unwrap_or_else(|e| panic!("MariaDB must run on 127.0.0.1:3306 (.ci/run starts it): {e}"));
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&admin).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.unwrap();
    let pool = sqlx::MySqlPool::connect(&format!("mysql://root@127.0.0.1:3306/{db}")).await.unwrap();
    for stmt in [
        "CREATE TABLE accounts (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) NOT NULL, balance DECIMAL(12,2))",
        "INSERT INTO accounts (name, balance) VALUES ('alice', 10.50), ('bob', 20.25), ('carol', NULL)",
        "CREATE TABLE secrets (id INT, v TEXT)",
        "INSERT INTO secrets VALUES (1, 'hunter2')",
        "CREATE TABLE types (ti TINYINT, si SMALLINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED, f FLOAT, d DOUBLE, \
         dec_ DECIMAL(38,10), vc VARCHAR(10), tx TEXT, bo BOOLEAN, dt DATE, tm TIME, dtm DATETIME(6), ts TIMESTAMP NULL, \
         j JSON, bl BLOB, en ENUM('a','b'), yr YEAR)",
        "INSERT INTO types VALUES (-1, 2, 3, 9223372036854775807, 18446744073709551615, 1.5, 2.25, \
         1234567890123456789012345678.0123456789, 'x', 'text', TRUE, '2024-02-29', '838:59:59', '2024-01-02 03:04:05.123456', \
         '2024-01-02 03:04:05', '{\"a\": 1}', X'00FF', 'b', 2024)",
        "INSERT INTO types (ti) VALUES (NULL)",
    ] {
        sqlx::query(stmt).execute(&pool).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    pool
}

async fn my_fingerprint(pool: &sqlx::MySqlPool) -> String {
    let mut out = String::new();
    for t in ["accounts", "secrets", "types"] {
        let row = sqlx::query(AssertSqlSafe(format!("CHECKSUM TABLE {t}"))).fetch_one(pool).await.unwrap();
        let sum: Option<i64> = sqlx::Row::try_get(&row, 1).unwrap_or(None);
        out += &format!("{t}={sum:?};");
    }
    let objects: Option<String> = sqlx::query_scalar(
        "SELECT CAST(GROUP_CONCAT(table_name ORDER BY table_name) AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user").fetch_one(pool).await.unwrap();
    format!("{out}objects={objects:?};users={users}")
}

#[tokio::test]
async fn mariadb_bypasses_are_refused_and_nothing_changes() {
    let db = format!("sluice_attack_my_{}", std::process::id());
    let pool = my_setup(&db).await;
    let before = my_fingerprint(&pool).await;
    let s = start(Options {
        database: Some(format!("mysql://root@127.0.0.1:3306/{db}")),
        policies: Some(policies()),
        ..Default::default()
    });
    let rejected = [
        "SELECT 1; DROP TABLE accounts",
        "SeLeCt 1; DeLeTe FROM accounts",
        "CREATE TABLE t (a INT)",
        "ALTER TABLE accounts ADD COLUMN x INT",
        "DROP TABLE accounts",
        "TRUNCATE TABLE accounts",
        "RENAME TABLE accounts TO a2",
        "CREATE USER evil IDENTIFIED BY 'x'",
        "GRANT ALL ON *.* TO 'evil'",
        "SELECT * FROM accounts INTO OUTFILE '/tmp/sluice-out'",
        "SELECT * INTO OUTFILE '/tmp/sluice-out' FROM accounts",
        "SELECT name FROM accounts LIMIT 1 INTO DUMPFILE '/tmp/sluice-dump'",
        "SELECT 1 /*!50000 , (SELECT v FROM secrets) */",
        "/*!50000 DROP TABLE accounts */",
        "SET GLOBAL max_connections = 1",
        "SET SESSION max_statement_time = 0",
        "KILL 1",
        "SELECT BENCHMARK(100000000, MD5('x'))",
        "SELECT SLEEP(5)",
        "DO SLEEP(5)",
        "SELECT GET_LOCK('x', 10)",
        "SELECT LOAD_FILE('/etc/passwd')",
        "LOCK TABLES accounts WRITE",
        "SELECT * FROM accounts FOR UPDATE",
        "START TRANSACTION",
        "CALL p()",
        "HANDLER accounts OPEN",
        "SELECT * FROM secrets",
        "SELECT * FROM accounts WHERE id IN (SELECT id FROM secrets)",
    ];
    for sql in rejected {
        expect(&s, sql, "sql_rejected").await;
    }
    expect(&s, "SELECT 1 AS a -- ; DROP TABLE accounts", "success").await;
    // MariaDB ends runaway recursion itself (max_recursive_iterations); any
    // verdict but a hang will do.
    let v = run(&s, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r")
        .await;
    assert!(
        ["success", "sql_error", "sql_timeout"].contains(&v["status"].as_str().unwrap()),
        "{}",
        v["error"]
    );
    let v = run(&s, "SELECT COUNT(*) FROM accounts a, accounts b, accounts c, accounts d, accounts e, accounts f, accounts g, accounts h, accounts i, accounts j, accounts k, accounts l, accounts m, accounts n, accounts o, accounts p WHERE MD5(CONCAT(a.name, p.name)) = 'x'").await;
    assert!(["sql_timeout", "success"].contains(&v["status"].as_str().unwrap()), "{}", v["error"]);
    expect(&s, "SELECT * FROM accounts ORDER BY id", "success").await;
    assert_eq!(my_fingerprint(&pool).await, before, "the database changed");

    let code = r#"
def classify(df):
    r = df.iloc[0]
    out = {"dtype:" + c: str(t) for c, t in df.dtypes.items()}
    out.update(dec_=str(r["dec_"]), ubi=int(r["ubi"]), bi=int(r["bi"]), dt=str(r["dt"]), tm=r["tm"], bl=r["bl"].hex(), j=r["j"], en=r["en"])
    print(out)
    return [0] * len(df)
"#;
    let (_, v) = execute(&s.base, json!({"sql_query": "SELECT * FROM types ORDER BY ti IS NULL", "classifier_code": code, "policy": "attack"})).await;
    assert_status(&v, "success");
    let out = v["stdout"].as_str().unwrap();
    for want in [
        "'ubi': 18446744073709551615",
        "'bi': 9223372036854775807",
        "'dec_': '1234567890123456789012345678.0123456789'",
        "'dtype:ubi': 'UInt64'",
        "'dtype:ti': 'Int64'",
        "'dt': '2024-02-29'",
        "'bl': '00ff'",
        "'en': 'b'",
        "'dtype:dtm': 'datetime64[us]'",
        "'dtype:ts': 'datetime64[us, UTC]'",
        "'tm': '838:59:59.000000'",
        "'dtype:bo': 'boolean'",
    ] {
        assert!(out.contains(want), "missing {want} in {out}");
    }
    pool.close().await;
    let admin = sqlx::MySqlPool::connect(MY_ADMIN).await.unwrap();
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&admin).await;
}
