//! The measurements beside bench/e2e.rs's main comparison: requests paced
//! as an agent sends them, CPU by process, the floor under a fresh process
//! per request (`fork_floor.py`), a cold interpreter.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use sluice::config::DataDir;
use sluice::environment::Environments;

use super::{SQL, Samples, Sluice, TRIVIAL};

/// Latencies of `n` trivial requests sent one at a time with `pause`
/// between them: what an agent that reads each answer before it sends the
/// next sees, on an otherwise idle machine.
pub async fn paced(s: &Sluice, n: usize, pause: std::time::Duration) -> Samples {
    let body = json!({"sql_query": SQL, "classifier_code": TRIVIAL});
    let mut out = Samples::default();
    for _ in 0..n {
        tokio::time::sleep(pause).await;
        out.0.push(s.call(&body).await.0);
    }
    out
}

/// CPU seconds used so far by `pid` itself and by its reaped children
/// (/proc/PID/stat utime + stime, cutime + cstime).
pub fn cpu_s(pid: i32) -> (f64, f64) {
    let f: Vec<f64> =
        sluice::executor::usage::stat_fields(pid).iter().map(|x| x.parse().unwrap_or(0.0)).collect();
    // /proc counts in USER_HZ, 100 on every Linux architecture.
    let tick = 100.0;
    if f.len() < 15 {
        return (0.0, 0.0);
    }
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick)
}

/// p50 of `runs` cold `python -c "import pandas, sklearn"`.
pub fn cold_import_p50(python: &Path, runs: usize) -> f64 {
    let mut cold = Samples::default();
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new(python)
            .args(["-I", "-B", "-c", "import pandas, sklearn"])
            .env_clear()
            .envs(sluice::executor::zygote::zygote_env())
            .status()
            .unwrap();
        assert!(st.success());
        cold.0.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    cold.p50()
}

/// bench/fork_floor.py: the CPU of a bare fork + exit of the zygote's image,
/// and of one that builds and classifies a trivial DataFrame (ms, parent
/// and child).
pub fn fork_floor(python: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .args(["-I", "-B"])
        .arg(root.join("bench/fork_floor.py"))
        .arg(root.join("sandbox/python"))
        .env_clear()
        .envs(sluice::executor::zygote::zygote_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "fork_floor.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The interpreter of the built default environment.
pub fn cold_python(data_dir: &Path) -> PathBuf {
    let mut envs = Environments::new(DataDir::new(data_dir), sluice::environment::EnvSpecs::builtin());
    envs.progress = false;
    envs.ensure("default", false).expect("default environment").python
}
