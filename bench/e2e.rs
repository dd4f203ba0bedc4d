//! End-to-end benchmark: `cargo bench --bench e2e`.
//!
//! Starts a real server (real environment, zygote and demo database),
//! sends a trivial classifier over `SELECT * FROM iris` through HTTP, and
//! reports p50/p95 latency and throughput. In the same run it times a cold
//! `python -c "import pandas, sklearn"` with the same interpreter and
//! environment, which is what a fresh process per request would pay, and
//! prints the ratio. Compare only figures taken in one run: the VM drifts.
//!
//! Env: SLUICE_BENCH_REQUESTS (default 300), SLUICE_BENCH_CLIENTS (default 4).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use sluice::app::{App, AppConfig};
use sluice::audit::keys::Role;
use sluice::config::DataDir;
use sluice::environment::Environments;

const TRIVIAL: &str =
    "def classify(df):\n    return ['wide' if w > 1.0 else 'narrow' for w in df['petal_width']]\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Start a server; returns its base URL and a key.
async fn start(data_dir: &std::path::Path, audited: bool) -> (String, String, Arc<App>) {
    let mut cfg = AppConfig::new(data_dir);
    cfg.progress = true;
    cfg.benchmark_without_audit = !audited;
    let app = App::build(cfg).await.expect("build");
    app.warm_up().await.expect("warm up");
    let admin = sluice::app::Caller::local("bench");
    let keys = app.keys(&sluice::app::grant::<sluice::app::act::ManageKeys>(&admin).expect("admin"));
    let (_, key) = keys.create_key("bench", &[Role::Admin], None).await.expect("key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sluice::http::serve(listener, app.clone()));
    (base, key, app)
}

/// Requests per second with `clients` concurrent clients.
async fn throughput(base: &str, key: &str, clients: usize, total: usize) -> f64 {
    let client = reqwest::Client::new();
    let body = json!({"sql_query": "SELECT * FROM iris", "classifier_code": TRIVIAL});
    let per = total / clients.max(1);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, b, k, body) = (client.clone(), base.to_string(), key.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let v: Value = c
                    .post(format!("{b}/execute-classifier"))
                    .bearer_auth(&k)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(v["status"], "success", "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * clients) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let requests = env_usize("SLUICE_BENCH_REQUESTS", 300);
    let clients = env_usize("SLUICE_BENCH_CLIENTS", 4);
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sluice-test-data");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (base, key, _app) = start(&data_dir, true).await;
        let client = reqwest::Client::new();
        let body = json!({"sql_query": "SELECT * FROM iris", "classifier_code": TRIVIAL});

        let one = |client: reqwest::Client, base: String, body: Value| {
            let key = key.clone();
            async move {
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/execute-classifier"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["status"], "success", "{v}");
                t.elapsed().as_secs_f64() * 1000.0
            }
        };

        for _ in 0..20 {
            one(client.clone(), base.clone(), body.clone()).await;
        }

        // Sequential latency.
        let mut lat = Vec::with_capacity(requests);
        let t0 = Instant::now();
        for _ in 0..requests {
            lat.push(one(client.clone(), base.clone(), body.clone()).await);
        }
        let seq_secs = t0.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p50 = percentile(&lat, 0.50);
        let p95 = percentile(&lat, 0.95);

        // Throughput with concurrent clients, with the audit log (as
        // served) and without it (a second server in this process whose
        // requests skip the log), alternating so drift hits both.
        let (base_off, key_off, _app_off) = start(&data_dir, false).await;
        throughput(&base_off, &key_off, clients, 20).await;
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            on.push(throughput(&base, &key, clients, requests).await);
            off.push(throughput(&base_off, &key_off, clients, requests).await);
        }
        on.sort_by(|a, b| a.partial_cmp(b).unwrap());
        off.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (conc_rps, conc_off) = (on[1], off[1]);

        // Cold start of the same interpreter and environment.
        // The zygote's details are shown to a key with the audit role (admin here).
        let ready: Value = client
            .get(format!("{base}/readyz"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let python = cold_python(&data_dir);
        let mut cold = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let st = std::process::Command::new(&python)
                .args(["-I", "-B", "-c", "import pandas, sklearn"])
                .env_clear()
                .envs([("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1")])
                .status()
                .unwrap();
            assert!(st.success());
            cold.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        cold.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let cold_p50 = percentile(&cold, 0.5);

        let z = &ready["environments"]["default"]["zygote"];
        println!("sluice e2e benchmark ({requests} requests, SELECT * FROM iris → 150 labels)");
        println!(
            "  zygote: rss {} MiB, {} thread(s), imports {:.0} ms",
            z["rss_kb"].as_u64().unwrap_or(0) / 1024,
            z["threads"],
            z["import_ms"].as_f64().unwrap_or(0.0)
        );
        println!("  latency p50     {p50:8.2} ms");
        println!("  latency p95     {p95:8.2} ms");
        println!("  latency min/max {:8.2} / {:.2} ms", lat[0], lat[lat.len() - 1]);
        println!("  sequential      {:8.1} req/s", requests as f64 / seq_secs);
        println!("  {clients} clients, audit on  {conc_rps:8.1} req/s (median of 3)");
        println!("  {clients} clients, audit off {conc_off:8.1} req/s (median of 3)");
        println!("  audit cost            {:8.1} % of throughput", (1.0 - conc_rps / conc_off) * 100.0);
        println!("  cold `python -c \"import pandas, sklearn\"` p50 {cold_p50:8.1} ms (5 runs)");
        println!("  ratio cold / warm p50  {:8.1}x", cold_p50 / p50);
    });
}

/// The interpreter of the built default environment.
fn cold_python(data_dir: &std::path::Path) -> PathBuf {
    let mut envs = Environments::new(DataDir::new(data_dir));
    envs.progress = false;
    envs.ensure("default", false).expect("default environment").python
}
