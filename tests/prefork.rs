//! Pre-forked children: a child forked and sandboxed before its request
//! serves exactly that one request (nothing of another reaches it, nothing
//! of it reaches the next), under the request's own limits, and the pools
//! refill after crashes, timeouts and spares that die while they wait.

mod common;

use std::time::{Duration, Instant};

use common::{Options, assert_status, client, execute, readyz, spare_pids, start};
use serde_json::{Value, json};

async fn misses(base: &str) -> u64 {
    let text = client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_prefork_misses_total "))
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no misses counter in {text}")) as u64
}

/// Wait until the default policy's pool holds `n` live spares, none of
/// them in `gone`; returns their pids.
async fn pool_full(base: &str, n: usize, gone: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = readyz(base).await;
        let pool = &ready["environments"]["default"]["prefork"]["default"];
        let pids = common::pool_pids(pool);
        if pids.len() == n
            && pool["target"] == n
            && pids.iter().all(|p| !gone.contains(p) && common::process::is_running(*p))
        {
            return pids;
        }
        assert!(Instant::now() < deadline, "the pool did not refill: {pool}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a child can see of the world before its code runs: its pid, a
/// mark left by an earlier request in the interpreter, files in its
/// scratch dir, its fds, and its address-space limit.
const PROBE: &str = r#"
import builtins, os, resource
def classify(df):
    seen = getattr(builtins, "_sluice_mark", None)
    builtins._sluice_mark = df["token"][0]
    files = sorted(os.listdir("."))
    open("left-behind", "w").write(df["token"][0])
    fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
    vm_kb = int([l for l in open("/proc/self/status") if l.startswith("VmSize:")][0].split()[1])
    as_mb = resource.getrlimit(resource.RLIMIT_AS)[0] // (1024 * 1024)
    return [f"{os.getpid()}|{seen}|{files}|{len(fds)}|{as_mb - vm_kb // 1024}"] * len(df)
"#;

#[tokio::test]
async fn a_pre_forked_child_serves_only_its_own_request() {
    let s = start(Options { prefork: 2, ..Options::default() });
    pool_full(&s.base, 2, &[]).await;
    let before = misses(&s.base).await;
    let mut pids = Vec::new();
    for i in 0..6 {
        // Two memory budgets: the child's limit is the request's, not the
        // policy's ceiling it was forked under.
        let memory = if i % 2 == 0 { 300 } else { 1500 };
        let token = format!("request-{i}");
        let body = json!({
            "sql_query": "SELECT ? AS token",
            "params": [token],
            "classifier_code": PROBE,
            "max_memory": memory,
        });
        let (status, v) = execute(&s.base, body).await;
        assert_eq!(status, 200, "{v}");
        assert_status(&v, "success");
        let out = v["predictions"][0].as_str().unwrap().to_string();
        let parts: Vec<&str> = out.split('|').collect();
        assert_eq!(parts[1], "None", "request {i} saw an earlier request's mark: {out}");
        assert_eq!(parts[2], "[]", "request {i} found files of an earlier request: {out}");
        // Its result pipe, /dev/null on 0-2, the rows' mapping (Python
        // keeps a copy of its fd) and the listing's own fd: no channel, no
        // other request's fds.
        assert!(parts[3].parse::<usize>().unwrap() <= 6, "request {i} has more fds than its own: {out}");
        // RLIMIT_AS is what was mapped at arrival + the request's memory + a
        // fixed headroom (256 MB), so its margin tells the budget apart.
        let margin: i64 = parts[4].parse().unwrap();
        let budget = memory as i64 + 256;
        assert!(
            (budget - 64..=budget + 64).contains(&margin),
            "request {i} ({memory} MB): {margin} MB over VmSize"
        );
        pids.push(parts[0].parse::<i32>().unwrap());
        // Let the pool refill, so every request gets a spare.
        pool_full(&s.base, 2, &pids).await;
    }
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), pids.len(), "a child served two requests: {pids:?}");
    assert_eq!(misses(&s.base).await, before, "every request found a spare waiting");
    // The children that served them are gone.
    for p in pids {
        let deadline = Instant::now() + Duration::from_secs(5);
        while common::process::is_running(p) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!common::process::is_running(p), "child {p} outlived its request");
    }
}

#[tokio::test]
async fn the_pool_refills_after_crashes_timeouts_and_dead_spares() {
    let s = start(Options { prefork: 2, ..Options::default() });
    let first = pool_full(&s.base, 2, &[]).await;
    let run = |code: &'static str, timeout: f64| {
        let base = s.base.clone();
        async move {
            let (status, v) = execute(
                &base,
                json!({"sql_query": "SELECT 1 AS x", "classifier_code": code, "timeout": timeout}),
            )
            .await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let crashed = run("import os\ndef classify(df):\n    os.abort()\n", 10.0).await;
    assert_status(&crashed, "runtime_error");
    let timed_out = run("def classify(df):\n    while True:\n        pass\n", 1.0).await;
    assert_status(&timed_out, "timeout");
    let exited = run("import os\ndef classify(df):\n    os._exit(3)\n", 10.0).await;
    assert_status(&exited, "runtime_error");
    let refilled = pool_full(&s.base, 2, &first).await;

    // Spares that die while they wait (here: killed from outside) are
    // dropped, never handed a request, and replaced.
    for p in &refilled {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    let ok: Value = run("def classify(df):\n    return [1] * len(df)\n", 10.0).await;
    assert_status(&ok, "success");
    let mut gone = first.clone();
    gone.extend(&refilled);
    pool_full(&s.base, 2, &gone).await;
    let ok: Value = run("def classify(df):\n    return [2] * len(df)\n", 10.0).await;
    assert_status(&ok, "success");
}

#[tokio::test]
async fn without_a_pool_each_child_is_forked_on_its_request() {
    let s = start(Options { prefork: 0, ..Options::default() });
    let ready = readyz(&s.base).await;
    assert!(spare_pids(&ready).is_empty(), "{ready}");
    let before = misses(&s.base).await;
    for _ in 0..2 {
        let (status, v) =
            execute(&s.base, json!({"sql_query": "SELECT 1 AS x", "classifier_code": common::OK})).await;
        assert_eq!(status, 200);
        assert_status(&v, "success");
    }
    assert_eq!(misses(&s.base).await, before + 2);
}

#[tokio::test]
async fn a_request_goes_to_another_child_when_its_spare_died_unnoticed() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let s = start(Options { prefork: 2, ..Options::default() });
    let spares = pool_full(&s.base, 2, &[]).await;
    let zygote = readyz(&s.base).await["environments"]["default"]["zygote"]["pid"].as_i64().unwrap() as i32;
    let before = misses(&s.base).await;
    // With the zygote stopped, nobody reaps the killed spares or reports
    // them gone: the server finds out only when it hands them the request.
    kill(Pid::from_raw(zygote), Signal::SIGSTOP).unwrap();
    for p in &spares {
        kill(Pid::from_raw(*p), Signal::SIGKILL).unwrap();
    }
    let base = s.base.clone();
    let request = tokio::spawn(async move {
        execute(&base, json!({"sql_query": "SELECT 1 AS x", "classifier_code": common::OK})).await
    });
    // Both spares refuse the request; the third child is forked once the
    // zygote runs again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(Pid::from_raw(zygote), Signal::SIGCONT).unwrap();
    let (status, v) = tokio::time::timeout(Duration::from_secs(30), request).await.expect("no hang").unwrap();
    assert_eq!(status, 200, "{v}");
    assert_status(&v, "success");
    assert!(misses(&s.base).await > before, "the request was served by a child forked for it");
    pool_full(&s.base, 2, &spares).await;
}

#[tokio::test]
async fn a_long_request_does_not_keep_the_pool_short() {
    // The refill waits for the requests being served while the pool holds
    // a spare for each, but not for longer than a second: a request that
    // runs for seconds must not leave the pool short for a burst.
    let s = start(Options { prefork: 2, ..Options::default() });
    let first = pool_full(&s.base, 2, &[]).await;
    let base = s.base.clone();
    let started = Instant::now();
    let long = tokio::spawn(async move {
        let code = "import time\ndef classify(df):\n    time.sleep(12)\n    return [1] * len(df)\n";
        execute(&base, json!({"sql_query": "SELECT 1 AS x", "classifier_code": code, "timeout": 30})).await
    });
    // Wait until it took a spare, then for the pool to be full again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pool = readyz(&s.base).await["environments"]["default"]["prefork"]["default"].clone();
        if common::pool_pids(&pool).iter().any(|p| !first.contains(p)) || pool["ready"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the request took no spare: {pool}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refilled = pool_full(&s.base, 2, &[]).await;
    assert!(
        !long.is_finished() && started.elapsed() < Duration::from_secs(11),
        "the pool refilled only once the long request ended ({:?}; pids {refilled:?})",
        started.elapsed()
    );
    let (status, v) = long.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_status(&v, "success");
}
