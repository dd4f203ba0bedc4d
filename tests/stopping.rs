//! `sluice serve` as a process (DESIGN §12 "Stopping"): on SIGTERM `/readyz`
//! and new executions answer 503 at once, executions in flight finish and
//! are recorded, the process exits 0; past `--shutdown-grace` what still
//! runs is killed and recorded `interrupted`, and nothing is left over (no
//! child, no scratch dir). An audit store that cannot be written runs
//! nothing.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Served {
    child: Child,
    base: String,
    key: String,
    audit: String,
    data_dir: std::path::PathBuf,
    /// The server's stderr (its log).
    log: std::path::PathBuf,
}

/// `sluice serve` on its own audit store (the shared data dir's
/// environment, built once), with the bootstrap admin key it prints.
fn serve(tag: &str, extra: &[&str]) -> Served {
    common::shared();
    let audit = common::process::temp_audit(&format!("stop-{tag}"));
    let log = std::env::temp_dir().join(format!("sluice-stop-{tag}-{}.log", std::process::id()));
    let mut cmd = common::process::serve_command(&audit);
    cmd.args(extra).stderr(std::fs::File::create(&log).unwrap());
    let (child, key, base) = common::process::spawn_serve(cmd);
    Served { child, base, key: key.unwrap(), audit, data_dir: common::data_dir(), log }
}

impl Served {
    fn post(
        &self,
        body: Value,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + 'static {
        reqwest::Client::new()
            .post(format!("{}/execute-classifier", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
    }

    fn term(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Exit status within `limit`.
    fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the audit store shows an execution `running`.
    fn wait_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.statuses().contains("running") {
            assert!(Instant::now() < deadline, "no execution started: {}", self.statuses());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The records of the audit store, as `sluice audit list` prints them.
    fn statuses(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["audit", "list", "--audit-database", &self.audit])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn sleeper(seconds: u32) -> Value {
    json!({
        "sql_query": "SELECT 1 AS x",
        "classifier_code": format!("import time\ndef classify(df):\n    time.sleep({seconds})\n    return [7]\n"),
        "timeout": 60,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_executions_finish_then_exits_zero() {
    let mut s = serve("finish", &["--shutdown-grace", "20"]);
    let in_flight = tokio::spawn(s.post(sleeper(3)));
    s.wait_running();
    s.term();
    let deadline = Instant::now() + Duration::from_secs(2);
    while reqwest::get(format!("{}/readyz", s.base)).await.unwrap().status() != 503 {
        assert!(Instant::now() < deadline, "/readyz must fail at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = s.post(json!({"sql_query": "SELECT 1 AS x", "classifier_code": common::OK})).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "stopping", "{v}");

    let done = in_flight.await.unwrap().expect("the execution in flight gets its answer");
    assert_eq!(done.status(), 200);
    let v: Value = done.json().await.unwrap();
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["predictions"], json!([7]));
    assert!(s.exited(Duration::from_secs(15)).success(), "exit 0");
    let list = s.statuses();
    // The refusal is on the record too (as not_ready: it ran nothing).
    assert!(list.contains("success") && list.contains("not_ready") && !list.contains("running"), "{list}");
    // The log: plain text (no terminal), one line per execution, the stop.
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains('\x1b'), "colour codes in a log file: {log}");
    assert!(log.contains(" execution execution_id=") && log.contains("status=success"), "{log}");
    assert!(log.contains("status=not_ready") || log.contains("stopping"), "{log}");
    assert!(log.contains("sluice: stopped after"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_executions_are_killed_and_recorded_interrupted() {
    let mut s = serve("kill", &["--shutdown-grace", "1"]);
    let ready: Value = reqwest::Client::new()
        .get(format!("{}/readyz", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let zygote = ready["environments"]["default"]["zygote"]["pid"].as_i64().unwrap() as i32;
    let in_flight = tokio::spawn(s.post(sleeper(30)));
    s.wait_running();
    let t = Instant::now();
    s.term();
    let answer = in_flight.await.unwrap().expect("the killed execution is answered");
    assert_eq!(answer.status(), 503);
    let v: Value = answer.json().await.unwrap();
    assert_eq!(v["error"]["code"], "interrupted", "{v}");
    assert!(s.exited(Duration::from_secs(20)).success(), "exit 0 after a kill too");
    assert!(t.elapsed() < Duration::from_secs(15), "stopped after {:?}", t.elapsed());
    let list = s.statuses();
    assert!(list.contains("interrupted") && !list.contains("running"), "{list}");
    // Nothing is left: the zygote and its child are gone, and so is every
    // scratch dir of this server.
    let alive = common::process::is_running;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(zygote) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(zygote), "the zygote outlived the server");
    let pid = s.child.id().to_string();
    for dir in std::fs::read_dir(s.data_dir.join("scratch")).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(&format!("{pid}-")), "scratch dir {name} left behind");
    }
}

/// A second SIGTERM ends a long grace at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_kills_at_once() {
    let mut s = serve("twice", &["--shutdown-grace", "300"]);
    let in_flight = tokio::spawn(s.post(sleeper(30)));
    s.wait_running();
    let t = Instant::now();
    s.term();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.term();
    let answer = in_flight.await.unwrap().expect("the killed execution is answered");
    assert_eq!(answer.status(), 503);
    assert!(s.exited(Duration::from_secs(30)).success(), "exit 0");
    assert!(t.elapsed() < Duration::from_secs(25), "stopped after {:?}", t.elapsed());
    assert!(s.statuses().contains("interrupted"), "{}", s.statuses());
}

/// No code runs without its audit record: with the store locked by another
/// writer, a request is refused with 503 and nothing of it ran; once the
/// lock goes, requests run and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_audit_store_runs_nothing() {
    let mut s = serve("locked", &[]);
    let path = s.audit.trim_start_matches("sqlite://").to_string();
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let code = "def classify(df):\n    print('ran')\n    return [0]\n";
    let t = Instant::now();
    let r = s.post(json!({"sql_query": "SELECT 1 AS x", "classifier_code": code})).await.unwrap();
    assert_eq!(r.status(), 503, "{:?}", r.text().await);
    assert!(t.elapsed() < Duration::from_secs(30), "answered after {:?}", t.elapsed());
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let r = s.post(json!({"sql_query": "SELECT 1 AS x", "classifier_code": code})).await.unwrap();
    assert_eq!(r.status(), 200);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["audit", "verify", "--audit-database", &s.audit])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    s.term();
    assert!(s.exited(Duration::from_secs(15)).success());
}
