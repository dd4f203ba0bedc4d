//! The server gives memory back: after three requests of a million rows
//! each, `sluice serve`'s RSS returns close to where it was idle (with
//! glibc's malloc it went from 21 MB to 151 MB and stayed there).

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

fn rss_kb(pid: u32) -> u64 {
    common::process::footprint(pid).0
}

/// The process's peak RSS since `reset_peak` (VmHWM): memory freed before
/// a sample could be taken still counts.
fn peak_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_after_large_results() {
    common::shared();
    let policies = common::policies_dir();
    std::fs::write(
        policies.join("million.toml"),
        "description = \"A million rows\"\n[limits]\nmax_rows = 1100000\nmemory_mb = 2048\n",
    )
    .unwrap();
    let mut cmd = common::process::serve_command(&common::process::temp_audit("memory"));
    cmd.arg("--policies").arg(&policies).stderr(Stdio::null());
    let (mut child, key, base) = common::process::spawn_serve(cmd);
    let key = key.unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
    let post = |body: Value| {
        let req = http.post(format!("{base}/execute-classifier")).bearer_auth(&key).json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let small = json!({"sql_query": "SELECT * FROM iris", "classifier_code": common::OK});
    for _ in 0..5 {
        assert_eq!(post(small.clone()).await["status"], "success");
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let idle = rss_kb(child.id());
    reset_peak(child.id());

    let million = json!({
        "policy": "million",
        "sql_query": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 1000000) \
                      SELECT n, n * 0.5 AS x, 'label' || (n % 7) AS t FROM r",
        "classifier_code": common::OK,
    });
    for _ in 0..3 {
        let v = post(million.clone()).await;
        assert_eq!(v["status"], "success", "{}", v["error"]);
        assert_eq!(v["row_count"], 1_000_000);
    }
    let peak = peak_kb(child.id());
    // jemalloc's background thread purges freed pages after 1 s (main.rs).
    let mut after = rss_kb(child.id());
    for _ in 0..30 {
        if after < idle + 32 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        after = rss_kb(child.id());
    }
    println!("memory: server RSS idle {idle} kB, peak {peak} kB, after {after} kB");
    let _ = child.kill();
    let _ = child.wait();
    assert!(peak > idle + 16 * 1024, "the requests did not use memory worth measuring: {idle} → {peak} kB");
    assert!(after < idle + 32 * 1024, "RSS stayed up: idle {idle} kB, peak {peak} kB, after {after} kB");
}
