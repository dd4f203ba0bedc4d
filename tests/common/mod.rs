//! Test support: a real sluice server (real environment, real zygote, real
//! SQLite demo database) on a random port. The environment and the demo
//! database are built once under the target dir and reused by every test
//! binary; each binary starts its own server(s).
#![allow(dead_code)]

pub mod process;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use sluice::app::{App, AppConfig};

/// Shared data dir: building the environment once is the expensive part.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sluice-test-data")
}

/// A policies dir with the shipped default policy plus `tight`, whose small
/// limits make every limit reachable in a test. One per test process, and
/// new for each: a reused pid must not find an earlier run's policies.
pub fn policies_dir() -> PathBuf {
    static STARTED: OnceLock<u128> = OnceLock::new();
    let nonce = STARTED.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    });
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("policies-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/default.toml"), dir.join("default.toml"))
        .unwrap();
    std::fs::write(
        dir.join("tight.toml"),
        r#"
description = "Small limits for tests"
[limits]
timeout_s = 2
max_timeout_s = 5
memory_mb = 256
max_memory_mb = 1024
max_rows = 10
sql_timeout_s = 1
max_output_bytes = 1000
max_stdout_bytes = 100
max_stderr_bytes = 100
[tables]
allow = ["iris"]
"#,
    )
    .unwrap();
    dir
}

/// The repository's environments dir: the built-in `default` and the
/// example operator environment `legacy-sklearn` (numpy 1.26, pandas 2.2,
/// scikit-learn 1.5, no pyarrow).
pub fn repo_environments() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox/environments"))
}

/// `policies_dir()` with every policy in environment `env`.
pub fn policies_dir_for(env: &str) -> PathBuf {
    let src = policies_dir();
    let dir = src.with_file_name(format!("{}-{env}", src.file_name().unwrap().to_string_lossy()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["default.toml", "tight.toml"] {
        let text = std::fs::read_to_string(src.join(f)).unwrap();
        let text: String =
            text.lines().filter(|l| !l.starts_with("environment =")).collect::<Vec<_>>().join("\n");
        std::fs::write(dir.join(f), format!("environment = \"{env}\"\n{text}\n")).unwrap();
    }
    dir
}

pub struct Server {
    pub base: String,
    pub app: Arc<App>,
}

pub struct Options {
    pub concurrency: usize,
    pub queue: usize,
    pub warm: bool,
    /// `None`: the demo database.
    pub database: Option<String>,
    /// `None`: `policies_dir()`.
    pub policies: Option<PathBuf>,
    /// Pre-forked children per policy.
    pub prefork: usize,
    /// The operator's environments dir (`None`: the built-in `default`).
    pub environments: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 2,
            queue: 32,
            warm: true,
            database: None,
            policies: None,
            prefork: sluice::app::DEFAULT_PREFORK,
            environments: None,
        }
    }
}

/// Start a server on its own runtime thread, which lives as long as the
/// test process (so does the zygote: it dies with us).
pub fn start(opts: Options) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let mut cfg = AppConfig::new(data_dir());
            cfg.policies_dir = Some(opts.policies.clone().unwrap_or_else(policies_dir));
            cfg.database = opts.database.clone();
            cfg.concurrency = opts.concurrency;
            cfg.queue = opts.queue;
            cfg.prefork = opts.prefork;
            cfg.environments_dir = opts.environments.clone();
            cfg.progress = false;
            let app = App::build(cfg).await.expect("building the app");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let server = tokio::spawn(sluice::http::serve(listener, app.clone()));
            if opts.warm {
                app.warm_up().await.expect("warming up");
            }
            tx.send(Server { base, app }).unwrap();
            server.await.unwrap().unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(600)).expect("server start")
}

/// The server shared by all tests of one binary.
pub fn shared() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| start(Options::default()))
}

/// An admin key in the shared audit store (made once per test process).
pub fn key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        // Its own thread: tests call this from inside their runtimes.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                std::fs::create_dir_all(data_dir()).unwrap();
                let url = format!("sqlite://{}", data_dir().join("audit.sqlite").display());
                let store = sluice::audit::AuditStore::open(&url).await.unwrap();
                let (_, secret) =
                    store.create_key("tests", &[sluice::audit::keys::Role::Admin], None).await.unwrap();
                secret
            })
        })
        .join()
        .unwrap()
    })
}

/// A client that sends the test key with every request.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", key()).parse().unwrap());
    reqwest::Client::builder().timeout(Duration::from_secs(120)).default_headers(headers).build().unwrap()
}

/// GET /readyz with the test key (the details).
pub async fn readyz(base: &str) -> Value {
    client().get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap()
}

/// Pids of the pre-forked children waiting in every pool of the default
/// environment (from /readyz).
pub fn spare_pids(ready: &Value) -> Vec<i32> {
    let pools = ready["environments"]["default"]["prefork"].as_object().cloned().unwrap_or_default();
    pools.values().flat_map(pool_pids).collect()
}

/// Pids of the children waiting in one pool of /readyz's `prefork`.
pub fn pool_pids(pool: &Value) -> Vec<i32> {
    pool["pids"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_i64()).map(|p| p as i32).collect())
        .unwrap_or_default()
}

/// POST /execute-classifier; returns (HTTP status, body).
pub async fn execute(base: &str, body: Value) -> (u16, Value) {
    let r = client().post(format!("{base}/execute-classifier")).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Run `code` over `sql` on the shared server, expecting HTTP 200.
pub async fn run(sql: &str, code: &str) -> Value {
    run_with(json!({"sql_query": sql, "classifier_code": code})).await
}

pub async fn run_with(body: Value) -> Value {
    let (status, v) = execute(&shared().base, body).await;
    assert!(status == 200 || status == 500, "HTTP {status}: {v}");
    v
}

/// Classifier code that runs anywhere: label 0 for every row.
pub const OK: &str = "def classify(df):\n    return [0] * len(df)\n";

/// Every key of the contract's 200 response.
pub const RESPONSE_KEYS: &[&str] = &[
    "execution_id",
    "status",
    "row_count",
    "columns",
    "predictions",
    "scores",
    "label_counts",
    "error",
    "stdout",
    "stderr",
    "stdout_truncated",
    "stderr_truncated",
    "timings_ms",
    "resources",
    "policy",
    "environment",
];

pub fn assert_status(v: &Value, status: &str) {
    assert_eq!(v["status"], status, "expected {status}, got: {}", serde_json::to_string_pretty(v).unwrap());
    for k in RESPONSE_KEYS {
        assert!(v.get(*k).is_some(), "key `{k}` missing in {v}");
    }
    if status == "success" {
        assert!(v["error"].is_null());
        assert!(v["predictions"].is_array());
    } else {
        assert_eq!(v["error"]["category"], status);
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(v["predictions"].is_null());
    }
}

/// The shared server's key store, as the local operator (`ManageKeys`).
pub fn keys() -> &'static sluice::audit::AuditStore {
    let admin = sluice::app::Caller::local("test");
    shared().app.keys(&sluice::app::grant::<sluice::app::act::ManageKeys>(&admin).expect("admin"))
}
