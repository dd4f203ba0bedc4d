//! API keys and the audit log over HTTP: roles (401 and 403), one complete
//! record per request whatever its ending, pagination and filters. The
//! store itself (hash chain, tampering, crash recovery, the CLI):
//! `audit_store.rs`.

mod common;

use common::{OK, assert_status, client, shared};
use serde_json::{Value, json};
use sluice::audit::keys::Role;
use uuid::Uuid;

async fn key_with(roles: &[Role], policies: Option<&[String]>) -> String {
    common::keys().create_key("test-role", roles, policies).await.unwrap().1
}

async fn post(key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}/execute-classifier", shared().base)).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(key: &str, path: &str) -> (u16, Value) {
    let r =
        reqwest::Client::new().get(format!("{}{path}", shared().base)).bearer_auth(key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn keys_roles_401_and_403() {
    let body = json!({"sql_query": "SELECT 1 AS x", "classifier_code": OK});
    let (status, v) = post(None, body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let (status, _) = post(Some("sluice_not_a_key"), body.clone()).await;
    assert_eq!(status, 401);

    let auditor = key_with(&[Role::Audit], None).await;
    let (status, v) = post(Some(&auditor), body.clone()).await;
    assert_eq!(status, 403);
    assert!(v["error"]["message"].as_str().unwrap().contains("needs `execute`"), "{v}");

    let runner = key_with(&[Role::Execute], None).await;
    let (status, v) = post(Some(&runner), body.clone()).await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = get(&runner, "/audit").await;
    assert_eq!(status, 403);
    let (status, _) = get(&auditor, "/audit").await;
    assert_eq!(status, 200);

    let tight_only = key_with(&[Role::Execute], Some(&["tight".to_string()])).await;
    let (status, v) = post(Some(&tight_only), body.clone()).await;
    assert_eq!(status, 403, "default policy is not allowed: {v}");
    let (status, _) = post(
        Some(&tight_only),
        json!({"sql_query": "SELECT 1 AS x", "classifier_code": OK, "policy": "tight"}),
    )
    .await;
    assert_eq!(status, 200);

    // Revoked keys stop working at once; health checks need no key.
    let (k, secret) = common::keys().create_key("short-lived", &[Role::Execute], None).await.unwrap();
    assert_eq!(post(Some(&secret), body.clone()).await.0, 200);
    common::keys().revoke_key(&k.id).await.unwrap();
    assert_eq!(post(Some(&secret), body).await.0, 401);
    let r = reqwest::Client::new().get(format!("{}/healthz", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// Each request, whatever its ending, leaves one complete record.
#[tokio::test]
async fn a_record_for_every_verdict() {
    let cases = [
        ("success", "SELECT * FROM iris LIMIT 3", OK.to_string(), json!({})),
        ("sql_rejected", "DELETE FROM iris", OK.to_string(), json!({})),
        ("sql_error", "SELECT nope FROM iris", OK.to_string(), json!({})),
        ("row_limit", "SELECT * FROM iris", OK.to_string(), json!({"policy": "tight"})),
        ("syntax_error", "SELECT 1 AS x", "def classify(df)\n".to_string(), json!({})),
        ("missing_entrypoint", "SELECT 1 AS x", "x = 1\n".to_string(), json!({})),
        ("runtime_error", "SELECT 1 AS x", "def classify(df):\n    1 / 0\n".to_string(), json!({})),
        ("invalid_output", "SELECT 1 AS x", "def classify(df):\n    return []\n".to_string(), json!({})),
        (
            "timeout",
            "SELECT 1 AS x",
            "def classify(df):\n    while True: pass\n".to_string(),
            json!({"timeout": 0.5}),
        ),
        (
            "security_violation",
            "SELECT 1 AS x",
            "import socket\ndef classify(df):\n    socket.socket()\n".to_string(),
            json!({}),
        ),
    ];
    for (status, sql, code, extra) in cases {
        let mut body = json!({"sql_query": sql, "classifier_code": code});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (_, v) = common::execute(&shared().base, body).await;
        assert_status(&v, status);
        let id = v["execution_id"].as_str().unwrap();
        let (code_, rec) = get(common::key(), &format!("/audit/{id}")).await;
        assert_eq!(code_, 200, "{rec}");
        assert_eq!(rec["status"], status);
        assert_eq!(rec["sql_query"], sql);
        assert_eq!(rec["code_sha256"].as_str().unwrap().len(), 64);
        assert!(rec["principal"].as_str().unwrap().starts_with("tests (k_"), "{rec}");
        assert!(rec["client_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(rec["finished_at"].is_string() && rec["hash"].is_string() && rec["prev_hash"].is_string());
        assert_eq!(rec["error"], v["error"]);
        if status == "security_violation" {
            assert_eq!(rec["blocked_syscall"], "socket");
        }
        if status == "success" {
            assert_eq!(rec["row_count"], 3);
            assert!(rec["resources"]["peak_memory_kb"].as_u64().unwrap() > 0);
        }
    }
    // A malformed request is recorded too.
    let r =
        client().post(format!("{}/execute-classifier", shared().base)).body("{oops").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (_, page) = get(common::key(), "/audit?status=bad_request&limit=5").await;
    assert!(!page["records"].as_array().unwrap().is_empty(), "{page}");
    let (code_, v) = get(common::key(), "/audit/verify").await;
    assert_eq!(code_, 200);
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn pagination_and_filters() {
    let (key, secret) =
        common::keys().create_key(&format!("pager-{}", Uuid::now_v7()), &[Role::Admin], None).await.unwrap();
    let principal = format!("{} ({})", key.name, key.id);
    let before = sluice::audit::now();
    for i in 0..5 {
        let code =
            if i == 4 { "def classify(df):\n    return 1\n".to_string() } else { format!("# run {i}\n{OK}") };
        let (status, _) =
            post(Some(&secret), json!({"sql_query": "SELECT 1 AS x", "classifier_code": code})).await;
        assert_eq!(status, 200);
    }
    let enc = |s: &str| s.replace(' ', "%20").replace('(', "%28").replace(')', "%29");
    let mut seen = Vec::new();
    let mut path = format!("/audit?principal={}&limit=2", enc(&principal));
    loop {
        let (status, page) = get(&secret, &path).await;
        assert_eq!(status, 200, "{page}");
        for r in page["records"].as_array().unwrap() {
            seen.push(r["created_at"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/audit?principal={}&limit=2&cursor={c}", enc(&principal)),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first: {seen:?}");
    let (_, page) =
        get(&secret, &format!("/audit?principal={}&status=invalid_output", enc(&principal))).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    let sha = page["records"][0]["code_sha256"].as_str().unwrap().to_string();
    let (_, page) = get(&secret, &format!("/audit?code_sha256={sha}")).await;
    assert!(page["records"].as_array().unwrap().iter().all(|r| r["code_sha256"] == sha.as_str()));
    let (_, page) = get(&secret, &format!("/audit?principal={}&since={}", enc(&principal), before)).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 5);
    let (_, page) = get(&secret, &format!("/audit?principal={}&until={}", enc(&principal), before)).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0);
    let (_, page) = get(&secret, &format!("/audit?principal={}&policy=tight", enc(&principal))).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0);
    let (status, v) = get(&secret, "/audit?since=yesterday").await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "since");
    let (status, _) = get(&secret, &format!("/audit/{}", Uuid::now_v7())).await;
    assert_eq!(status, 404);
}
