//! HTTP behaviour: every non-200 code has a JSON body, limits and queueing,
//! readiness, and the server surviving the death of its zygote.

mod common;

use std::time::Duration;

use common::process::{children_of, is_running};
use common::{Options, assert_status, client, execute, readyz, shared, spare_pids, start};
use serde_json::{Value, json};

const CODE: &str = "def classify(df):\n    return [0] * len(df)\n";

async fn post_raw(base: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/execute-classifier"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("HTTP {status} body is not JSON: {text}"));
    (status, v)
}

#[tokio::test]
async fn malformed_json_is_a_400_with_a_json_body() {
    let (status, v) = post_raw(&shared().base, "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "bad_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("invalid request body"), "{v}");
}

#[tokio::test]
async fn unknown_and_missing_fields_are_named() {
    let (status, v) =
        execute(&shared().base, json!({"sql_query": "SELECT 1", "classifier_code": CODE, "tiemout": 3}))
            .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "tiemout");
    assert!(v["error"]["message"].as_str().unwrap().contains("timeout"), "lists the known fields: {v}");
    let (status, v) = execute(&shared().base, json!({"sql_query": "SELECT 1"})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "classifier_code");
    let (status, v) =
        execute(&shared().base, json!({"sql_query": "SELECT 1", "classifier_code": CODE, "timeout": "soon"}))
            .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "timeout");
}

#[tokio::test]
async fn limits_over_the_policy_maximum_are_a_400() {
    let base = &shared().base;
    let (status, v) =
        execute(base, json!({"sql_query": "SELECT 1", "classifier_code": CODE, "timeout": 121})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "timeout");
    assert!(v["error"]["message"].as_str().unwrap().contains("120"), "{v}");
    let (status, v) =
        execute(base, json!({"sql_query": "SELECT 1", "classifier_code": CODE, "max_memory": 999999})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "max_memory");
    let (status, v) =
        execute(base, json!({"sql_query": "SELECT 1", "classifier_code": CODE, "policy": "nope"})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "policy");
    assert!(v["error"]["message"].as_str().unwrap().contains("default"), "{v}");
    let (status, v) =
        execute(base, json!({"sql_query": "SELECT 1", "classifier_code": CODE, "entrypoint": "os.system"}))
            .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "entrypoint");
    let (status, v) =
        execute(base, json!({"sql_query": "SELECT ?", "classifier_code": CODE, "params": [{"a": 1}]})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["field"], "params[0]");
}

#[tokio::test]
async fn bodies_over_the_limit_are_a_413_with_a_json_body() {
    let big = json!({"sql_query": "SELECT 1", "classifier_code": "#".repeat(3 * 1024 * 1024)}).to_string();
    let (status, v) = post_raw(&shared().base, big).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn unknown_paths_and_methods_have_json_bodies() {
    let r = client().get(format!("{}/nope", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let r = client().get(format!("{}/execute-classifier", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn health_and_readiness() {
    let r = client().get(format!("{}/healthz", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client().get(format!("{}/readyz", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ready"], true);
    let z = &v["environments"]["default"]["zygote"];
    assert_eq!(z["threads"], 1, "the zygote must stay single-threaded: {v}");
    assert_eq!(z["isolation"]["network_namespace"], true, "{v}");
    assert_eq!(z["isolation"]["user_namespace"], true, "{v}");
}

#[tokio::test]
async fn not_ready_until_warm_is_a_503() {
    let s = start(Options { warm: false, ..Default::default() });
    let r = client()
        .post(format!("{}/execute-classifier", s.base))
        .json(&json!({"sql_query": "SELECT 1", "classifier_code": CODE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_ready");
    let r = client().get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["warm"], false);
    s.app.warm_up().await.unwrap();
    let (status, v) = execute(&s.base, json!({"sql_query": "SELECT 1 AS x", "classifier_code": CODE})).await;
    assert_eq!(status, 200);
    assert_status(&v, "success");
}

#[tokio::test]
async fn a_full_queue_is_a_429_with_retry_after() {
    let s = start(Options { concurrency: 1, queue: 0, ..Default::default() });
    let slow = json!({
        "sql_query": "SELECT 1 AS x",
        "classifier_code": "import time\ndef classify(df):\n    time.sleep(2)\n    return [0]\n",
    });
    let base = s.base.clone();
    let running = tokio::spawn(async move { execute(&base, slow).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = client()
        .post(format!("{}/execute-classifier", s.base))
        .json(&json!({"sql_query": "SELECT 1 AS x", "classifier_code": CODE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_full");
    let (status, v) = running.await.unwrap();
    assert_eq!(status, 200);
    assert_status(&v, "success");
}

fn zygote_pid(v: &Value) -> i32 {
    v["environments"]["default"]["zygote"]["pid"].as_i64().unwrap() as i32
}

#[tokio::test]
async fn zygote_death_is_an_internal_error_then_it_restarts() {
    let s = start(Options::default());
    let ready = readyz(&s.base).await;
    let pid = zygote_pid(&ready);
    let slow = json!({
        "sql_query": "SELECT 1 AS x",
        "classifier_code": "import time\ndef classify(df):\n    time.sleep(20)\n    return [0]\n",
    });
    let base = s.base.clone();
    let running = tokio::spawn(async move { execute(&base, slow).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The sleeping request's child, and the spares waiting for requests.
    let orphans = children_of(pid);
    let spares = spare_pids(&readyz(&s.base).await);
    assert!(
        orphans.iter().any(|c| !spares.contains(c)),
        "the sleeping request's child: {orphans:?} {spares:?}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let (status, v) = tokio::time::timeout(Duration::from_secs(10), running).await.expect("no hang").unwrap();
    assert_eq!(status, 500);
    assert_status(&v, "internal_error");
    // The next request gets a fresh zygote.
    let (status, v) = execute(&s.base, json!({"sql_query": "SELECT 1 AS x", "classifier_code": CODE})).await;
    assert_eq!(status, 200, "{v}");
    assert_status(&v, "success");
    let ready = readyz(&s.base).await;
    assert_ne!(zygote_pid(&ready), pid);
    assert_eq!(ready["ready"], true);
    // The request's child and the spares died with their zygote
    // (parent-death signal). One may linger as a zombie until its new
    // parent reaps it: not running.
    for child in orphans {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while is_running(child) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!is_running(child), "child {child} outlived its zygote");
    }
}

#[tokio::test]
async fn a_dead_zygote_is_restarted_without_waiting_for_a_request() {
    let s = start(Options::default());
    let ready = readyz(&s.base).await;
    let pid = zygote_pid(&ready);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = client().get(format!("{}/readyz", s.base)).send().await.unwrap();
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if code == 200 && v["environments"]["default"]["zygote"]["pid"].as_i64() != Some(pid as i64) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not ready again: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn no_child_outlives_its_request() {
    let s = start(Options::default());
    let ready = readyz(&s.base).await;
    let pid = zygote_pid(&ready);
    // Children that report their pid: one returns at once, one leaves a
    // thread behind (both with a wall clock far off: their end must come
    // from the request's end, not from their limit); the third never
    // returns (its 1 s wall clock ends it).
    let mut served = Vec::new();
    for (code, timeout) in [
        ("import os\ndef classify(df):\n    return [os.getpid()] * len(df)\n", 60),
        ("def classify(df):\n    while True:\n        pass\n", 1),
        (
            "import os, threading, time\ndef classify(df):\n    threading.Thread(target=time.sleep, args=(300,)).start()\n    return [os.getpid()] * len(df)\n",
            60,
        ),
    ] {
        let (status, body) = execute(
            &s.base,
            json!({"sql_query": "SELECT 1 AS x", "classifier_code": code, "timeout": timeout}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        served.extend(body["predictions"].as_array().into_iter().flatten().filter_map(|p| p.as_i64()));
    }
    assert_eq!(served.len(), 2, "two children report their pid");
    // What may still run is the spares waiting for requests and, while a
    // pool is short, the refill's spare on its way in (on a loaded machine
    // it can take seconds). Once every pool is full nothing is forked, so
    // a child beside them then is one that outlived its request.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = readyz(&s.base).await;
        let pools = ready["environments"]["default"]["prefork"].as_object().cloned().unwrap_or_default();
        let full = pools.values().all(|p| p["ready"] == p["target"]);
        let spares = spare_pids(&ready);
        let extra: Vec<i32> =
            children_of(pid).into_iter().filter(|c| is_running(*c) && !spares.contains(c)).collect();
        // Among the zygote's children (a bare pid could have been reused).
        let leaked: Vec<i32> = extra.iter().copied().filter(|c| served.contains(&(*c as i64))).collect();
        // The same zygote throughout: a restarted one has other children.
        assert_eq!(zygote_pid(&ready), pid, "the zygote was replaced");
        if full && extra.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "children beside the spares: {extra:?}; served children still running: {leaked:?}; pools: {pools:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn prometheus_metrics_count_executions() {
    let (status, _) =
        execute(&shared().base, json!({"sql_query": "SELECT 1 AS x", "classifier_code": CODE})).await;
    assert_eq!(status, 200);
    let r = client().get(format!("{}/metrics", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let successes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("sluice_executions_total{status=\"success\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(successes >= 1);
    assert!(text.contains("# TYPE sluice_execution_seconds histogram"), "{text}");
    assert!(text.contains("sluice_zygotes_up 1\n"), "{text}");
    let r = reqwest::Client::new().get(format!("{}/metrics", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
