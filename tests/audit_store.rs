//! The audit store itself: the hash chain under concurrent writers (SQLite
//! and PostgreSQL), tamper detection, crash recovery, the `keys` CLI, and
//! pages bounded in bytes. Keys and the log over HTTP: `audit_api.rs`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::OK;
use serde_json::{Value, json};
use sluice::audit::{AuditStore, Finish, NewExecution};
use uuid::Uuid;

fn temp_db(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "audit-{name}-{}-{}.sqlite",
        std::process::id(),
        Uuid::now_v7()
    ));
    format!("sqlite://{}", path.display())
}

async fn fill(store: &AuditStore, n: usize, tag: &str) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::now_v7();
        let e = NewExecution {
            execution_id: id,
            principal: format!("{tag}-{i}"),
            sql_query: Some("SELECT 1".into()),
            classifier_code: Some(OK.into()),
            ..Default::default()
        };
        store.start(&e).await.unwrap();
        store
            .finish(
                id,
                &Finish { status: sluice::status::Status::Success, row_count: Some(1), ..Default::default() },
            )
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn tampering_is_detected_at_the_row() {
    let url = temp_db("tamper");
    let store = AuditStore::open(&url).await.unwrap();
    let ids = fill(&store, 4, "t").await;
    let v = sluice::audit::chain::verify(&store).await.unwrap();
    assert!(v.ok && v.checked == 4, "{v:?}");
    // Edit one row behind sluice's back.
    sqlx::query("UPDATE executions SET status = 'success', row_count = 999 WHERE execution_id = $1")
        .bind(ids[1].to_string())
        .execute(store.pool())
        .await
        .unwrap();
    let v = sluice::audit::chain::verify(&store).await.unwrap();
    assert!(!v.ok);
    assert_eq!(v.broken_at.as_deref(), Some(ids[1].to_string().as_str()));
    assert!(v.reason.unwrap().contains("do not match its hash"));
    // Deleting a row is found too.
    let store2 = AuditStore::open(&temp_db("delete")).await.unwrap();
    let ids = fill(&store2, 3, "d").await;
    sqlx::query("DELETE FROM executions WHERE execution_id = $1")
        .bind(ids[1].to_string())
        .execute(store2.pool())
        .await
        .unwrap();
    let v = sluice::audit::chain::verify(&store2).await.unwrap();
    assert!(!v.ok && v.broken_at.as_deref() == Some(ids[2].to_string().as_str()), "{v:?}");
}

async fn concurrent_writers(url: &str) {
    let a = AuditStore::open(url).await.unwrap();
    let b = AuditStore::open(url).await.unwrap();
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move { fill(&store, 25, &format!("w{i}")).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = sluice::audit::chain::verify(&a).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checked, 100);
}

#[tokio::test]
async fn concurrent_writers_never_fork_the_chain_sqlite() {
    concurrent_writers(&temp_db("concurrent")).await;
    filters_read_alike(&temp_db("filters")).await;
}

/// The filters read alike on both stores: a key's name with `_` matches
/// that name only (no wildcard), the text search ignores case and takes
/// `%` literally.
async fn filters_read_alike(url: &str) {
    let store = AuditStore::open(url).await.unwrap();
    for (principal, sql) in
        [("agent_1 (k_aaa)", "SELECT 'Hello' AS zq9"), ("agentx1 (k_bbb)", "SELECT '100%' AS zq9")]
    {
        let id = Uuid::now_v7();
        let start = NewExecution {
            execution_id: id,
            principal: principal.into(),
            sql_query: Some(sql.into()),
            ..Default::default()
        };
        store.start(&start).await.unwrap();
        store.finish(id, &Finish::default()).await.unwrap();
    }
    let who = |f: sluice::audit::Filter| {
        let store = &store;
        async move { store.list(&f).await.unwrap().records.into_iter().map(|r| r.principal).collect::<Vec<_>>() }
    };
    let by = |p: &str| sluice::audit::Filter { principal: Some(p.into()), ..Default::default() };
    let text = |q: &str| sluice::audit::Filter { q: Some(q.into()), ..Default::default() };
    assert_eq!(who(by("agent_1")).await, ["agent_1 (k_aaa)"], "{url}");
    assert_eq!(who(by("k_bbb")).await, ["agentx1 (k_bbb)"], "{url}");
    assert_eq!(who(text("HELLO")).await, ["agent_1 (k_aaa)"], "{url}");
    assert_eq!(who(text("100%")).await, ["agentx1 (k_bbb)"], "{url}");
    assert_eq!(store.count(&text("ZQ9")).await.unwrap(), 2, "{url}");
}

#[tokio::test]
async fn concurrent_writers_never_fork_the_chain_postgres() {
    // A database of our own on the local server, dropped afterwards.
    let admin = "postgres://postgres@127.0.0.1:5432/test";
    let db = format!("sluice_audit_{}", std::process::id());
    let conn = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await;
    let Ok(pool) = conn else {
        panic!("PostgreSQL must be running on 127.0.0.1:5432 (.ci/run starts it): {:?}", conn.err());
    };
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&pool).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&pool).await.unwrap();
    concurrent_writers(&format!("postgres://postgres@127.0.0.1:5432/{db}")).await;
    filters_read_alike(&format!("postgres://postgres@127.0.0.1:5432/{db}")).await;
    // Tampering is found there too.
    let store = AuditStore::open(&format!("postgres://postgres@127.0.0.1:5432/{db}")).await.unwrap();
    sqlx::query("UPDATE executions SET principal = 'someone-else' WHERE chain_seq = 7")
        .execute(store.pool())
        .await
        .unwrap();
    let v = sluice::audit::chain::verify(&store).await.unwrap();
    assert!(!v.ok, "{v:?}");
    store.pool().close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
        .execute(&pool)
        .await;
}

/// A server killed mid-request leaves a `running` row; the next start marks
/// it `interrupted`, keeping its fields, and the chain still verifies.
#[test]
fn a_killed_server_leaves_a_running_row_that_becomes_interrupted() {
    common::shared();
    let db = temp_db("crash");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let serve = || {
        let mut cmd = common::process::serve_command(&db);
        cmd.stderr(Stdio::null());
        common::process::spawn_serve(cmd)
    };
    let (mut first, key, base) = serve();
    let key = key.expect("a fresh store prints the bootstrap admin key");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slow = rt.spawn({
        let (base, key) = (base.clone(), key.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{base}/execute-classifier"))
                .bearer_auth(key)
                .json(&json!({"sql_query": "SELECT 1 AS x", "classifier_code": "import time\ndef classify(df):\n    time.sleep(30)\n"}))
                .send()
                .await
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();
    let _ = rt.block_on(slow);

    let show = |status: &str| -> Value {
        let out = Command::new(sluice)
            .args(["audit", "list", "--status", status, "--audit-database", &db])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        json!(text)
    };
    assert!(show("running").as_str().unwrap().contains("running"), "the crash left a running row");

    let (mut second, key2, _) = serve();
    assert!(key2.is_none(), "a store with keys does not print a new one");
    second.kill().unwrap();
    second.wait().unwrap();
    let listed = show("interrupted");
    let text = listed.as_str().unwrap();
    let id = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("an interrupted row")
        .to_string();
    let out = Command::new(sluice).args(["audit", "show", &id, "--audit-database", &db]).output().unwrap();
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "interrupted");
    assert!(rec["classifier_code"].as_str().unwrap().contains("time.sleep(30)"), "original fields kept");
    let out = Command::new(sluice).args(["audit", "verify", "--audit-database", &db]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = Command::new(sluice)
        .args(["audit", "export", "--format", "jsonl", "--audit-database", &db])
        .output()
        .unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|r| r["execution_id"] == id.as_str()));
}

#[test]
fn keys_cli_prints_the_key_alone_on_the_last_line() {
    let db = temp_db("keys-cli");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let out = Command::new(sluice)
        .args([
            "keys",
            "create",
            "--name",
            "ci",
            "--role",
            "execute",
            "--role",
            "audit",
            "--policy",
            "default",
            "--audit-database",
            &db,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("sluice_") && last.len() == 7 + 64, "{text}");
    let out = Command::new(sluice).args(["keys", "list", "--audit-database", &db]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("ci") && list.contains("audit,execute") && !list.contains(last), "{list}");
    let id = list.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let out = Command::new(sluice).args(["keys", "revoke", &id, "--audit-database", &db]).output().unwrap();
    assert!(out.status.success());
}

/// The key and audit commands say what is wrong and what to do: unknown
/// policies and duplicate names are refused, an unknown key is named as
/// such, `audit show` takes a unique prefix, `--principal` takes a key's
/// name or id, `--status` must be a status, and a page says how to get the
/// next one.
#[tokio::test]
async fn the_store_commands_say_what_is_wrong() {
    let db = temp_db("cli-errors");
    let sluice = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--audit-database", &db])
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (ok, text) = sluice(&["keys", "create", "--name", "a", "--role", "execute", "--policy", "nope"]);
    assert!(!ok && text.contains("no policy `nope`") && text.contains("default"), "{text}");
    let (ok, text) = sluice(&["keys", "create", "--name", "agent-1", "--role", "execute"]);
    assert!(ok, "{text}");
    let (ok, text) = sluice(&["keys", "create", "--name", "agent-1", "--role", "audit"]);
    assert!(!ok && text.contains("already named `agent-1`"), "{text}");
    let (ok, text) = sluice(&["keys", "revoke", "k_nonexist"]);
    assert!(!ok && text.contains("no active key k_nonexist") && !text.contains("execution"), "{text}");
    let (ok, text) = sluice(&["audit", "list", "--status", "bogus"]);
    assert!(!ok && text.contains("`bogus` is not a status"), "{text}");

    // Three records by `agent-1`, through the store as the server writes them.
    let store = AuditStore::open(&db).await.unwrap();
    let key = store.list_keys().await.unwrap().into_iter().find(|k| k.name == "agent-1").unwrap();
    let label = format!("agent-1 ({})", key.id);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = Uuid::now_v7();
        let start = NewExecution { execution_id: id, principal: label.clone(), ..Default::default() };
        store.start(&start).await.unwrap();
        store.finish(id, &Finish::default()).await.unwrap();
        ids.push(id.to_string());
    }
    for who in ["agent-1", key.id.as_str(), label.as_str()] {
        let (ok, text) = sluice(&["audit", "list", "--principal", who]);
        assert!(ok && ids.iter().all(|id| text.contains(id)), "--principal {who}: {text}");
    }
    let (ok, text) = sluice(&["audit", "list", "--principal", "agent"]);
    assert!(ok && !ids.iter().any(|id| text.contains(id)), "a part of a name is not a name: {text}");
    let (ok, text) = sluice(&["audit", "list", "--limit", "2"]);
    assert!(ok && text.contains("more records: sluice audit list --cursor "), "{text}");
    let cursor = text.split("--cursor ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let (ok, text) = sluice(&["audit", "list", "--limit", "2", "--cursor", &cursor]);
    assert!(ok && text.contains(&ids[0]) && !text.contains("more records"), "{text}");
    // The first 13 characters of a v7 id (its millisecond) are shared by
    // ids made in the same millisecond: ask with the whole first group.
    let (ok, text) = sluice(&["audit", "show", &ids[2][..23]]);
    assert!(ok && text.contains(&ids[2]), "{text}");
    let (ok, text) = sluice(&["audit", "show", "0000000"]);
    assert!(!ok && text.contains("at least 8"), "{text}");
}

/// A page of `GET /audit` stops at `MAX_PAGE_BYTES` of records, whatever
/// `limit` asks, and the cursor leads to the rest.
#[tokio::test]
async fn a_page_is_bounded_in_bytes() {
    let store = AuditStore::open(&temp_db("page-bytes")).await.unwrap();
    let code = format!("# {}\ndef classify(df):\n    return [0]\n", "x".repeat(1 << 20));
    for i in 0..6 {
        let id = Uuid::now_v7();
        let e = NewExecution {
            execution_id: id,
            principal: format!("big-{i}"),
            sql_query: Some("SELECT 1".into()),
            classifier_code: Some(code.clone()),
            ..Default::default()
        };
        store.start(&e).await.unwrap();
        let f = Finish {
            status: sluice::status::Status::Success,
            full_text: Some(("SELECT 1".into(), code.clone())),
            ..Default::default()
        };
        store.finish(id, &f).await.unwrap();
    }
    let filter = sluice::audit::Filter { limit: Some(500), ..Default::default() };
    let first = store.list(&filter).await.unwrap();
    let bytes = serde_json::to_vec(&first.records).unwrap().len();
    assert!(
        first.records.len() < 6 && bytes <= sluice::audit::MAX_PAGE_BYTES,
        "{} records, {bytes} bytes",
        first.records.len()
    );
    assert_eq!(
        first.records[0].classifier_code.as_deref(),
        Some(code.as_str()),
        "a record that ran is whole"
    );
    let rest = store
        .list(&sluice::audit::Filter {
            limit: Some(500),
            cursor: first.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.records.len() + rest.records.len(), 6);
    assert!(sluice::audit::chain::verify(&store).await.unwrap().ok);
}
