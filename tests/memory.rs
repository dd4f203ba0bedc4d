//! The server gives memory back: after three requests of a million rows
//! each, `sluice serve`'s RSS returns close to where it was idle (with
//! glibc's malloc it went from 21 MB to 151 MB and stayed there).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
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
    let audit = std::env::temp_dir().join(format!("sluice-memory-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let audit = format!("sqlite://{}", audit.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(common::data_dir())
        .args(["serve", "--bind", "127.0.0.1:0", "--audit-database", &audit, "--policies"])
        .arg(&policies)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut key, mut base) = (None, None);
    let mut line = String::new();
    while base.is_none() {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "serve exited");
        let l = line.trim();
        if l.starts_with("sluice_") {
            key = Some(l.to_string());
        }
        base = l.strip_prefix("sluice listening on ").map(String::from);
    }
    let (key, base) = (key.unwrap(), base.unwrap());
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

    let million = json!({
        "policy": "million",
        "sql_query": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 1000000) \
                      SELECT n, n * 0.5 AS x, 'label' || (n % 7) AS t FROM r",
        "classifier_code": common::OK,
    });
    let mut peak = idle;
    for _ in 0..3 {
        let v = post(million.clone()).await;
        assert_eq!(v["status"], "success", "{}", v["error"]);
        assert_eq!(v["row_count"], 1_000_000);
        peak = peak.max(rss_kb(child.id()));
    }
    // jemalloc's background thread purges freed pages within its 10 s decay.
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
