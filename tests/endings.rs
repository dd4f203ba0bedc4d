//! Every way a request can end leaves things as they were: a caller that
//! goes away does not cut an execution short; the code ending its own
//! process, or failing an allocation, gets its own category; every engine
//! counts placeholders itself; a statement abandoned mid-way is stopped in
//! the database at once (PostgreSQL, MariaDB), not at its timeout; MariaDB's
//! JSON arrives as text; a child that stops itself or blocks every signal
//! still ends at its wall-clock limit.

mod common;

use std::time::{Duration, Instant};

use common::{assert_status, client, execute, run, shared};
use serde_json::{Value, json};
use sha2::Digest;
use sluice::policy::TableAllow;
use sluice::sql::{Access, DataSource, FetchLimits, Param, SqlError};
use sqlx::AssertSqlSafe;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const MARIADB: &str = "mysql://root@127.0.0.1:3306/test";

fn limits(max_rows: u64, seconds: u64) -> FetchLimits {
    FetchLimits { max_rows, max_bytes: 0, timeout: Duration::from_secs(seconds) }
}

/// The audit records of `code` (by its hash), newest first.
async fn records_of(code: &str) -> Vec<Value> {
    let sha = hex::encode(sha2::Sha256::digest(code.as_bytes()));
    let url = format!("{}/audit?code_sha256={sha}", shared().base);
    let v: Value = client().get(url).send().await.unwrap().json().await.unwrap();
    v["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_end_the_execution() {
    let code = format!(
        "import time\n# {}\ndef classify(df):\n    time.sleep(1.5)\n    return [1] * len(df)\n",
        uuid::Uuid::now_v7()
    );
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(400)).build().unwrap();
    let sent = impatient
        .post(format!("{}/execute-classifier", shared().base))
        .bearer_auth(common::key())
        .json(&json!({"sql_query": "SELECT 1 AS x", "classifier_code": code}))
        .send()
        .await;
    assert!(sent.is_err(), "the client was meant to give up first");
    // The execution runs on; its record completes with the verdict.
    let deadline = Instant::now() + Duration::from_secs(20);
    let record = loop {
        let records = records_of(&code).await;
        if let Some(r) = records.first().filter(|r| r["status"] != "running") {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "the record stayed running: {records:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["status"], "success", "{record}");
    assert!(record["finished_at"].is_string(), "{record}");
    // Its scratch dir went with it (only this server's own dir remains).
    let id = record["execution_id"].as_str().unwrap();
    let scratch = common::data_dir().join("scratch");
    for server in std::fs::read_dir(&scratch).unwrap().flatten() {
        assert!(!server.path().join(id).exists(), "scratch dir of {id} left behind");
    }
}

#[tokio::test]
async fn code_that_exits_the_process_is_a_runtime_error() {
    for (code, exit) in [("os._exit(0)", 0), ("os._exit(3)", 3)] {
        let (status, v) = execute(
            &shared().base,
            json!({"sql_query": "SELECT 1 AS x", "classifier_code": format!("import os\ndef classify(df):\n    {code}\n")}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_status(&v, "runtime_error");
        assert_eq!(v["error"]["exit_code"], exit, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("exit code"), "{v}");
    }
}

#[tokio::test]
async fn any_allocation_failure_is_a_memory_limit() {
    for code in [
        "import mmap\ndef classify(df):\n    m = mmap.mmap(-1, 64 << 30)\n    return [0] * len(df)\n",
        // A library that wraps the failure in an error of its own.
        "import mmap\ndef classify(df):\n    try:\n        mmap.mmap(-1, 64 << 30)\n    except OSError as e:\n        raise RuntimeError('could not map') from e\n",
        "def classify(df):\n    b = bytearray(64 << 30)\n    return [0] * len(df)\n",
    ] {
        let v = run("SELECT 1 AS x", code).await;
        assert_status(&v, "memory_limit");
        assert!(v["error"]["limit_mb"].as_u64().is_some(), "{v}");
    }
}

#[tokio::test]
async fn a_child_that_stops_itself_or_blocks_signals_ends_at_its_wall_clock() {
    for code in [
        "import signal\ndef classify(df):\n    signal.raise_signal(signal.SIGSTOP)\n    return [0]\n",
        "import signal, time\ndef classify(df):\n    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))\n    \
         for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):\n        signal.signal(s, signal.SIG_IGN)\n    \
         time.sleep(60)\n    return [0]\n",
    ] {
        let (status, v) = execute(
            &shared().base,
            json!({"sql_query": "SELECT 1 AS x", "classifier_code": code, "timeout": 1}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_status(&v, "timeout");
        // The sandbox stage's own time: a wait for a slot is not the child's.
        let ms = v["timings_ms"]["sandbox"].as_f64().unwrap();
        assert!(ms < 4000.0, "the child ended after {ms} ms");
    }
}

/// Each engine, not only sluice's parser, refuses a placeholder count that
/// differs from the values given (SQLite would bind the missing ones NULL).
#[tokio::test]
async fn every_engine_counts_the_placeholders_itself() {
    let demo = format!("sqlite://{}", common::data_dir().join("demo.sqlite").display());
    shared();
    for (url, one, two) in [
        (demo.as_str(), "SELECT id FROM iris WHERE id = ?", "SELECT ? AS a, ? AS b"),
        (PG, "SELECT 1 AS x WHERE 1 = $1", "SELECT $1::int AS a, $2::int AS b"),
        (MARIADB, "SELECT 1 AS x FROM DUAL WHERE 1 = ?", "SELECT ? AS a, ? AS b"),
    ] {
        let source = DataSource::connect(url, 2).await.unwrap();
        let access = Access { tables: &TableAllow::All, role: None };
        let r = source.run_unchecked(one, &[], access, limits(10, 5)).await;
        assert!(matches!(r, Err(SqlError::Params { expected: 1, given: 0 })), "{url}: {r:?}");
        let access = Access { tables: &TableAllow::All, role: None };
        let r = source.run_unchecked(two, &[Param::Int(1)], access, limits(10, 5)).await;
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("2 placeholder(s)") && e.contains("1 value(s)"), "{url}: {e}");
    }
}

/// MariaDB's JSON is LONGTEXT with a binary collation, which the protocol
/// flags as binary: it (and any `_bin` text) arrives as text, only the
/// `binary` charset as bytes.
#[tokio::test]
async fn mariadb_json_and_bin_collated_text_arrive_as_text() {
    let pool =
        sqlx::MySqlPool::connect(MARIADB).await.expect("MariaDB on 127.0.0.1:3306 (.ci/run starts it)");
    let t = format!("endings_json_{}", std::process::id());
    for sql in [
        format!("DROP TABLE IF EXISTS {t}"),
        format!("CREATE TABLE {t} (j JSON, b VARCHAR(10) COLLATE utf8mb4_bin, v VARBINARY(4))"),
        format!("INSERT INTO {t} VALUES ('{{\"a\": [1, 2]}}', 'abc', x'00ff')"),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    let source = DataSource::connect(MARIADB, 2).await.unwrap();
    let access = Access { tables: &TableAllow::All, role: None };
    let rows = source.run_unchecked(&format!("SELECT j, b, v FROM {t}"), &[], access, limits(10, 5)).await;
    let _ = sqlx::query(AssertSqlSafe(format!("DROP TABLE {t}"))).execute(&pool).await;
    let types: Vec<&str> = rows.unwrap().columns.iter().map(|c| c.type_name).collect();
    assert_eq!(types, ["text", "text", "bytes"]);
}

/// The row limit ends a PostgreSQL query at once (not at its statement
/// timeout), and the requests after it find clean connections.
#[tokio::test]
async fn postgres_row_limit_is_prompt_and_leaves_clean_connections() {
    let source = DataSource::connect(PG, 2).await.unwrap();
    let pg = sqlx::PgPool::connect(PG).await.unwrap();
    let tag = format!("rowlimit_{}", uuid::Uuid::now_v7().simple());
    let big = format!(
        "SELECT a.g AS {tag} FROM generate_series(1, 100000) a(g) CROSS JOIN generate_series(1, 100000) b(g)"
    );
    for _ in 0..3 {
        let t = Instant::now();
        let access = Access { tables: &TableAllow::All, role: None };
        let r = source.run_unchecked(&big, &[], access, limits(1000, 10)).await;
        assert!(matches!(r, Err(SqlError::RowLimit { limit: 1000 })), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "row limit after {:?}", t.elapsed());
        // … and in the database too, not at the statement timeout.
        let deadline = Instant::now() + Duration::from_secs(8);
        while active(&pg, &tag).await > 0 {
            assert!(Instant::now() < deadline, "the statement still runs after its row limit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..4 {
            let access = Access { tables: &TableAllow::All, role: None };
            let r = source.run_unchecked("SELECT 1 AS x", &[], access, limits(10, 5)).await;
            assert!(r.is_ok(), "a connection came back dirty: {r:?}");
        }
    }
}

/// Backends of PostgreSQL running a statement that names `tag`.
async fn active(pg: &sqlx::PgPool, tag: &str) -> i64 {
    let q = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%AS {tag}%' \
         AND query NOT LIKE '%pg_stat_activity%'"
    );
    sqlx::query_scalar(AssertSqlSafe(q)).fetch_one(pg).await.unwrap()
}

/// A statement whose request is abandoned (the future dropped, as a stop's
/// kill does) is stopped in the database at once: PostgreSQL cancels it,
/// MariaDB kills it, instead of computing on until the statement timeout.
#[tokio::test]
async fn an_abandoned_statement_stops_in_the_database() {
    let tag = format!("abandoned_{}", uuid::Uuid::now_v7().simple());
    let pg = sqlx::PgPool::connect(PG).await.unwrap();
    let my = sqlx::MySqlPool::connect(MARIADB).await.unwrap();
    let heavy_pg = format!(
        "SELECT count(*) AS {tag} FROM generate_series(1, 20000) a, generate_series(1, 20000) b, generate_series(1, 20000) c"
    );
    let heavy_my =
        format!("SELECT count(*) AS {tag} FROM seq_1_to_20000 a, seq_1_to_20000 b, seq_1_to_20000 c");
    let my_running = async || -> i64 {
        let q = format!(
            "SELECT count(*) FROM information_schema.processlist WHERE command IN ('Query', 'Execute') \
             AND info LIKE '%AS {tag}%' AND info NOT LIKE '%processlist%'"
        );
        sqlx::query_scalar(AssertSqlSafe(q)).fetch_one(&my).await.unwrap()
    };
    for (url, sql) in [(PG, &heavy_pg), (MARIADB, &heavy_my)] {
        let running = async || if url == PG { active(&pg, &tag).await } else { my_running().await };
        let source = DataSource::connect(url, 2).await.unwrap();
        let access = Access { tables: &TableAllow::All, role: None };
        let query = source.run_unchecked(sql, &[], access, limits(10, 30));
        let mut query = Box::pin(query);
        // Abandon it only once the database is seen running it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                r = &mut query => panic!("{url}: the query ended by itself: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if running().await > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{url}: the query never showed up as running");
        }
        drop(query);
        // Far below the 30 s statement timeout (the count alone would run
        // for hours), with room for a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(10);
        while running().await > 0 {
            if Instant::now() > deadline {
                // What the database says about it, for the failure report.
                let q = format!(
                    "SELECT string_agg(pid || ' ' || backend_type || ' ' || state || ' ' || \
                     coalesce(wait_event, '-'), '; ') FROM pg_stat_activity WHERE query LIKE '%AS {tag}%'"
                );
                let seen: Option<String> =
                    sqlx::query_scalar(AssertSqlSafe(q)).fetch_one(&pg).await.ok().flatten();
                panic!("{url}: the abandoned statement still runs (PostgreSQL sees: {seen:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
