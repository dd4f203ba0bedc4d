//! What leaves through the server's doors besides a caller's own rows
//! (issue "Close the holes"): data through a key without the `execute`
//! role, server facts to strangers, other policies' audit records, the
//! review pages' defences, terminal escapes in key names, connections held
//! by slow clients or MCP sessions, the output channel a policy narrows, and
//! the audit store's cost of a refused request. Each case fails if its layer
//! is taken away. Inside the sandbox: `containment_sandbox.rs`.

mod common;
#[path = "support/containment.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{assert_status, client, execute, run, shared};
use serde_json::{Value, json};
use support::{ONE_ROW, audit_record, run_on, server, tool_call};

#[tokio::test]
async fn a_key_without_the_execute_role_reads_no_rows_through_the_tools() {
    let (_, secret) =
        common::keys().create_key("auditor", &[sluice::audit::keys::Role::Audit], None).await.unwrap();
    let http = reqwest::Client::new();
    for call in [
        json!({"type": "tool_use", "id": "t1", "name": "describe_table", "input": {"table": "iris"}}),
        json!({"type": "tool_use", "id": "t2", "name": "list_tables", "input": {}}),
        json!({"type": "tool_use", "id": "t3", "name": "execute_classifier",
               "input": {"sql_query": ONE_ROW, "classifier_code": "def classify(df):\n    return [0]\n"}}),
    ] {
        let r = tool_call(shared(), &secret, &call).await;
        assert_eq!(r["is_error"], true, "{call}: {r}");
        let text = r["content"].as_str().unwrap();
        assert!(text.contains("`execute`") && !text.contains("setosa"), "{call}: {r}");
    }
    let r = http.get(format!("{}/schema", shared().base)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn readiness_tells_strangers_only_whether_it_is_ready() {
    let base = &shared().base;
    let (_, executor) =
        common::keys().create_key("runner", &[sluice::audit::keys::Role::Execute], None).await.unwrap();
    let anonymous = reqwest::Client::new().get(format!("{base}/readyz")).send().await.unwrap();
    let with_execute =
        reqwest::Client::new().get(format!("{base}/readyz")).bearer_auth(&executor).send().await.unwrap();
    for r in [anonymous, with_execute] {
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["ready"], true, "{v}");
        assert_eq!(v["database"], json!({"reachable": true}), "the database shown without an audit key: {v}");
        assert_eq!(v["environments"]["default"], json!({"alive": true}), "sandbox facts shown: {v}");
        assert!(!v.to_string().contains("sqlite"), "{v}");
    }
    let v: Value = client().get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
    assert!(v["database"]["url"].is_string() && v["environments"]["default"]["layers"].is_array(), "{v}");
}

#[tokio::test]
async fn an_audit_key_limited_to_a_policy_sees_only_that_policy() {
    let base = &shared().base;
    // One record under `default`, one under `tight`.
    let v = run(ONE_ROW, "def classify(df):\n    return [0]\n").await;
    let other = v["execution_id"].as_str().unwrap().to_string();
    let (_, v) = execute(
        base,
        json!({"sql_query": ONE_ROW, "classifier_code": "def classify(df):\n    return [0]\n", "policy": "tight"}),
    )
    .await;
    let mine = v["execution_id"].as_str().unwrap().to_string();
    let (_, secret) = common::keys()
        .create_key("tight-auditor", &[sluice::audit::keys::Role::Audit], Some(&["tight".to_string()]))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let page: Value = http
        .get(format!("{base}/audit?limit=500"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = page["records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["execution_id"] == mine.as_str()), "{page}");
    assert!(records.iter().all(|r| r["policy"] == "tight"), "other policies' records leaked: {page}");
    let r = http.get(format!("{base}/audit/{other}")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http.get(format!("{base}/audit/{mine}")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn the_review_pages_defend_the_browser() {
    let base = &shared().base;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(format!("{base}/ui/login?next=/ui/audit")).send().await.unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let token = set.strip_prefix("sluice_login=").unwrap().split(';').next().unwrap().to_string();
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let form = |csrf: &str, next: &str| format!("key={}&csrf={csrf}&next={next}", common::key());
    // A form posted from elsewhere (no token) signs nobody in.
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("", "/ui/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    // CR/LF in `next` is no way to split headers, nor an error.
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("sluice_login={token}"))
        .header("x-forwarded-proto", "https")
        .body(form(&token, "/ui/audit%0d%0aSet-Cookie:%20x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "{:?}", r.headers());
    assert_eq!(r.headers()["location"], "/ui/audit");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn key_names_cannot_carry_terminal_escapes() {
    let e =
        common::keys().create_key("evil\u{1b}]0;owned\u{7}", &[sluice::audit::keys::Role::Audit], None).await;
    assert!(e.is_err(), "a control character in a key name was accepted");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_let_go() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = shared().base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /execute-classifier HTTP/1.1\r\nHost: sluice\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(25), s.read_to_end(&mut buf))
        .await
        .expect("a half-sent request still holds its connection after 25 s")
        .ok();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5), "closed after {waited:?}: too eager");
    assert_eq!(sluice::http::HEADER_TIMEOUT, Duration::from_secs(10));
}

#[tokio::test]
async fn one_key_holds_a_bounded_number_of_mcp_sessions() {
    let base = &shared().base;
    let (_, secret) =
        common::keys().create_key("sessions", &[sluice::audit::keys::Role::Execute], None).await.unwrap();
    let http = reqwest::Client::new();
    let open = || {
        http.post(format!("{base}/mcp"))
            .bearer_auth(&secret)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
            .send()
    };
    let mut ids = Vec::new();
    for _ in 0..sluice::http::MAX_MCP_SESSIONS_PER_KEY {
        let r = open().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        ids.push(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
    }
    let r = open().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_sessions", "{v}");
    // Closing one makes room; another key is not affected.
    let r = http
        .delete(format!("{base}/mcp"))
        .bearer_auth(&secret)
        .header("mcp-session-id", &ids[0])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(open().await.unwrap().status().as_u16(), 200);
}

/// Code that sees rows can return them as labels or print them; a policy
/// can narrow what leaves, and the audit keeps what did.
#[tokio::test]
async fn the_output_channel_is_bounded_by_the_policy() {
    const IRIS: &str = "SELECT * FROM iris";
    // Every row back as text labels: refused under numbers-only labels.
    let exfil = "def classify(df):\n    return df.astype(str).agg('|'.join, axis=1)\n";
    let v = run(IRIS, exfil).await;
    assert_status(&v, "success");
    assert!(v["predictions"][0].as_str().unwrap().contains('|'), "the channel exists by default: {v}");
    let v = run_on("channel", IRIS, exfil).await;
    assert_status(&v, "invalid_output");
    assert_eq!(v["error"]["reason"], "label_kind", "{v}");
    // Numbers, but one per row: too many distinct labels.
    let v = run_on("channel", IRIS, "def classify(df):\n    return list(range(len(df)))\n").await;
    assert_eq!(v["error"]["reason"], "too_many_labels", "{v}");
    // Printed rows stay in the audit record.
    let code = "def classify(df):\n    print(df.to_csv())\n    return [int(x) for x in df['id'] % 3]\n";
    let v = run_on("channel", IRIS, code).await;
    assert_status(&v, "success");
    assert_eq!(v["stdout"], "", "{v}");
    let rec = audit_record(server(), &v).await;
    let out = &rec["output"];
    assert_eq!(out["returned"], "labels", "{rec}");
    assert_eq!(out["distinct_labels"], 3);
    assert_eq!(out["labels_sha256"].as_str().unwrap().len(), 64);
    assert!(out["stdout_excerpt"].as_str().unwrap().contains("sepal_length"), "{out}");
    // Scores are 64 bits a row: dropped under this policy.
    let code =
        "def classify(df):\n    return {'labels': [0] * len(df), 'scores': [float(x) for x in df['id']]}\n";
    let v = run_on("channel", IRIS, code).await;
    assert_status(&v, "success");
    assert!(v["scores"].is_null(), "{v}");
    // Counts only, small groups left out.
    let code =
        "def classify(df):\n    return ['rare' if i < 3 else s for i, s in enumerate(df['species'])]\n";
    let v = run_on("counts", IRIS, code).await;
    assert_eq!(v["status"], "success", "{v}");
    assert!(v["predictions"].is_null() && v["scores"].is_null(), "{v}");
    let counts = v["label_counts"].as_object().unwrap();
    assert!(!counts.contains_key("rare"), "a group of 3 under a minimum of 10: {v}");
    assert!(v["row_count"].is_null(), "an exact count would give the small groups away: {v}");
    assert_eq!(counts.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 147);
    // describe_table without sample rows.
    let call = json!({"type": "tool_use", "id": "d", "name": "describe_table",
                      "input": {"table": "iris", "policy": "channel"}});
    let r = tool_call(server(), common::key(), &call).await;
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured_content"]["sample_rows"], json!([]), "{r}");
}

/// A request refused before it reached the database keeps an excerpt of a
/// long text (and the hash of all of it); one that ran keeps it whole.
#[tokio::test]
async fn refused_requests_cost_the_audit_store_little() {
    let long_sql = format!("SELECT 1 AS x /* {} */ FROM nowhere_at_all", "y".repeat(200_000));
    let v = run(&long_sql, "def classify(df):\n    return [0]\n").await;
    let rec = audit_record(shared(), &v).await;
    let kept = rec["sql_query"].as_str().unwrap();
    assert!(kept.len() < 9 * 1024 && kept.contains("200"), "{} bytes kept", kept.len());
    assert_eq!(rec["sql_sha256"], sluice::audit::sha256_hex(&long_sql));
    let code = format!("# {}\ndef classify(df):\n    return [0] * len(df)\n", "z".repeat(20_000));
    let v = run(ONE_ROW, &code).await;
    assert_status(&v, "success");
    let rec = audit_record(shared(), &v).await;
    assert_eq!(rec["classifier_code"].as_str().unwrap(), code, "code that ran is kept whole");
    let verify: Value =
        client().get(format!("{}/audit/verify", shared().base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}
