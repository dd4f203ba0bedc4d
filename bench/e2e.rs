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
use sluice::config::DataDir;
use sluice::environment::Environments;
use sluice::service::{App, AppConfig};

const TRIVIAL: &str =
    "def classify(df):\n    return ['wide' if w > 1.0 else 'narrow' for w in df['petal_width']]\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let requests = env_usize("SLUICE_BENCH_REQUESTS", 300);
    let clients = env_usize("SLUICE_BENCH_CLIENTS", 4);
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sluice-test-data");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut cfg = AppConfig::new(&data_dir);
        cfg.progress = true;
        let app = Arc::new(App::build(cfg).await.expect("build"));
        app.warm_up().await.expect("warm up");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(sluice::server::serve(listener, app.clone()));
        let client = reqwest::Client::new();
        let body = json!({"sql_query": "SELECT * FROM iris", "classifier_code": TRIVIAL});

        let one = |client: reqwest::Client, base: String, body: Value| async move {
            let t = Instant::now();
            let r = client.post(format!("{base}/execute-classifier")).json(&body).send().await.unwrap();
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["status"], "success", "{v}");
            t.elapsed().as_secs_f64() * 1000.0
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

        // Throughput with concurrent clients.
        let t1 = Instant::now();
        let per_client = requests / clients.max(1);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (c, b, body) = (client.clone(), base.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    one(c.clone(), b.clone(), body.clone()).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let conc_rps = (per_client * clients) as f64 / t1.elapsed().as_secs_f64();

        // Cold start of the same interpreter and environment.
        let ready: Value = client.get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
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
        println!("  {clients} clients       {conc_rps:8.1} req/s");
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
