//! The soak (ignored by default; run it and quote it, it is not a timed
//! unit test): `sluice serve` as a process takes SOAK_REQUESTS (10 000)
//! mixed requests from 4 clients — successes and every verdict a caller can
//! cause, timeouts, memory and security violations, malformed bodies — and
//! every answer must be the expected one. Afterwards the server's RSS and
//! open fds are back where they were, no child of the zygote is left but
//! the pre-forked ones waiting for requests, the
//! zygote is the same process, and the audit chain verifies.
//!
//!     cargo test --test soak -- --ignored --nocapture

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::process::{children_of, footprint};
use serde_json::{Value, json};

const CLIENTS: usize = 4;

/// (weight, expected status or HTTP code, body)
fn mix() -> Vec<(u32, &'static str, Value)> {
    let ok = common::OK;
    let q = |sql: &str, code: &str| json!({"sql_query": sql, "classifier_code": code});
    let tight = |sql: &str, code: &str| json!({"sql_query": sql, "classifier_code": code, "policy": "tight"});
    vec![
        (40, "success", q("SELECT * FROM iris", ok)),
        (
            10,
            "success",
            q("SELECT * FROM wine WHERE magnesium < ?", ok)
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.insert("params".into(), json!([50]));
                    Value::Object(o)
                })
                .unwrap(),
        ),
        (4, "sql_rejected", q("DELETE FROM iris", ok)),
        (4, "sql_error", q("SELECT nosuch FROM iris", ok)),
        (
            1,
            "sql_timeout",
            tight(
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) AS c FROM r",
                ok,
            ),
        ),
        (4, "row_limit", tight("SELECT * FROM iris", ok)),
        (4, "syntax_error", q("SELECT 1 AS x", "def classify(df) return")),
        (4, "missing_entrypoint", q("SELECT 1 AS x", "def other(df):\n    return []\n")),
        (4, "runtime_error", q("SELECT 1 AS x", "def classify(df):\n    return 1 / 0\n")),
        (2, "runtime_error", q("SELECT 1 AS x", "import os\ndef classify(df):\n    os._exit(0)\n")),
        (4, "invalid_output", q("SELECT * FROM iris", "def classify(df):\n    return [0]\n")),
        (
            1,
            "timeout",
            json!({"sql_query": "SELECT 1 AS x", "classifier_code": "import time\ndef classify(df):\n    time.sleep(5)\n", "timeout": 1}),
        ),
        (
            2,
            "memory_limit",
            q("SELECT 1 AS x", "def classify(df):\n    b = bytearray(8 << 30)\n    return [0]\n"),
        ),
        (
            2,
            "memory_limit",
            q(
                "SELECT 1 AS x",
                "import mmap\ndef classify(df):\n    mmap.mmap(-1, 8 << 30)\n    return [0]\n",
            ),
        ),
        (
            2,
            "output_limit",
            tight("SELECT * FROM iris LIMIT 10", "def classify(df):\n    return ['x' * 200] * len(df)\n"),
        ),
        (
            2,
            "security_violation",
            q("SELECT 1 AS x", "import os\ndef classify(df):\n    os.system('id')\n    return [0]\n"),
        ),
        (
            2,
            "security_violation",
            q("SELECT 1 AS x", "def classify(df):\n    open('/etc/passwd').read()\n    return [0]\n"),
        ),
        (2, "400", json!({"sql_query": "SELECT 1 AS x"})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a soak of 10 000 requests: run it by hand and quote its figures"]
async fn soak() {
    let total: usize = std::env::var("SOAK_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    common::shared();
    let audit = common::process::temp_audit("soak");
    let mut cmd = common::process::serve_command(&audit);
    cmd.args(["--queue", "64", "--policies"]).arg(common::policies_dir()).stderr(Stdio::null());
    let (mut child, key, base) = common::process::spawn_serve(cmd);
    let key = key.unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let zygote = |http: reqwest::Client| {
        let (base, key) = (base.clone(), key.clone());
        async move {
            let v: Value = http
                .get(format!("{base}/readyz"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v["environments"]["default"]["zygote"]["pid"].as_i64().unwrap() as i32, common::spare_pids(&v))
        }
    };
    let (zygote_before, _) = zygote(http.clone()).await;

    let mix = Arc::new(mix());
    let weights: u32 = mix.iter().map(|m| m.0).sum();
    let next = Arc::new(AtomicUsize::new(0));
    let run = |n: usize| {
        let (mix, next, http, base, key) =
            (mix.clone(), next.clone(), http.clone(), base.clone(), key.clone());
        async move {
            let mut wrong = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return wrong;
                }
                // Spread the kinds evenly through the run.
                let mut pick = (i as u32).wrapping_mul(2_654_435_761) % weights;
                let (_, want, body) = mix
                    .iter()
                    .find(|m| {
                        pick < m.0 || {
                            pick -= m.0;
                            false
                        }
                    })
                    .unwrap();
                let r =
                    http.post(format!("{base}/execute-classifier")).bearer_auth(&key).json(body).send().await;
                let got = match r {
                    Ok(r) if r.status() == 200 => r
                        .json::<Value>()
                        .await
                        .map(|v| v["status"].as_str().unwrap_or("?").to_string())
                        .unwrap_or_default(),
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(e) => format!("transport error: {e}"),
                };
                if got != *want {
                    wrong.push(format!("#{i}: want {want}, got {got} for {body}"));
                }
            }
        }
    };
    // Warm-up, then the baseline.
    for h in (0..CLIENTS).map(|_| tokio::spawn(run(200))).collect::<Vec<_>>() {
        let wrong = h.await.unwrap();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = footprint(child.id());

    next.store(0, Ordering::SeqCst);
    let t = Instant::now();
    let mut wrong = Vec::new();
    for h in (0..CLIENTS).map(|_| tokio::spawn(run(total))).collect::<Vec<_>>() {
        wrong.extend(h.await.unwrap());
    }
    let elapsed = t.elapsed();
    // jemalloc's background thread gives freed pages back within ~10 s.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = footprint(child.id());
    // Only the pre-forked children waiting for requests are left.
    let (zygote_after, spares) = zygote(http.clone()).await;
    let leftovers: Vec<i32> = children_of(zygote_after).into_iter().filter(|c| !spares.contains(c)).collect();
    let verify = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["audit", "verify", "--audit-database", &audit])
        .output()
        .unwrap();
    println!(
        "soak: {total} requests from {CLIENTS} clients in {:.1} s ({:.1} req/s); {} wrong; server RSS {} → {} kB, \
         open fds {} → {}; zygote {zygote_before} → {zygote_after}; children left {leftovers:?}; audit verify: {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        wrong.len(),
        before.0,
        after.0,
        before.1,
        after.1,
        String::from_utf8_lossy(&verify.stdout).trim()
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert!(wrong.is_empty(), "{} wrong answers, e.g. {:#?}", wrong.len(), &wrong[..wrong.len().min(10)]);
    assert_eq!(zygote_before, zygote_after, "the zygote was replaced");
    assert!(leftovers.is_empty(), "children left: {leftovers:?}");
    assert!(verify.status.success(), "the audit chain does not verify");
    assert!(after.1 <= before.1 + 4, "open fds grew: {} → {}", before.1, after.1);
    assert!(after.0 < before.0 + 32 * 1024, "RSS grew: {} → {} kB", before.0, after.0);
}
