//! The `sluice` binary as a user runs it: `run`, `serve` (with the README's
//! request), `env list` / `env info` (with `--environments`), and a bad
//! policy or environment folder stopping start-up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.arg("--data-dir").arg(common::data_dir());
    c.env_remove("SLUICE_DATABASE_URL").env_remove("SLUICE_POLICIES").env_remove("SLUICE_BIND");
    c
}

fn code_file(name: &str, code: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}.py", std::process::id()));
    std::fs::write(&p, code).unwrap();
    p
}

#[test]
fn run_prints_the_same_json_as_the_api() {
    let f = code_file("species", "def classify(df):\n    return df['species']\n");
    let out = sluice().args(["run", "--sql", "SELECT * FROM iris", "--code-file"]).arg(&f).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_status(&v, "success");
    assert_eq!(v["label_counts"], json!({"setosa": 50, "versicolor": 50, "virginica": 50}));
}

#[test]
fn run_exits_non_zero_on_an_error_verdict_and_binds_params() {
    let f = code_file("bad", "def classify(df):\n    return 1 / 0\n");
    let out = sluice()
        .args(["run", "--sql", "SELECT * FROM iris WHERE id = ?", "--param", "3", "--code-file"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_status(&v, "runtime_error");
    assert_eq!(v["row_count"], 1);
}

#[test]
fn env_list_shows_the_built_default_environment() {
    common::shared(); // makes sure it is built
    let out = sluice().args(["env", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("default\t")).expect("default listed");
    assert!(line.contains("\tbuilt\t") && line.contains("pandas=="), "{line}");
}

#[test]
fn env_info_shows_an_operator_environment_and_its_resolved_versions() {
    let dir = common::repo_environments();
    // Built through the library (as `serve` would on its first use).
    let specs = sluice::environment::EnvSpecs::load(Some(&dir)).unwrap();
    let mut envs =
        sluice::environment::Environments::new(sluice::config::DataDir::new(common::data_dir()), specs);
    envs.progress = false;
    envs.ensure("legacy-sklearn", false).unwrap();
    let out = sluice().arg("--environments").arg(&dir).args(["env", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("legacy-sklearn\t")).expect("listed");
    assert!(line.contains("\tbuilt\t") && line.contains("numpy==1.26.4"), "{line}");
    assert!(text.lines().any(|l| l.starts_with("default\t")), "{text}");
    let out =
        sluice().arg("--environments").arg(&dir).args(["env", "info", "legacy-sklearn"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["numpy==1.26.4", "scikit-learn==1.5.2", "start       on_demand", "idle stop   after 600 s"] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // Without the directory the environment does not exist, and says so.
    let out = sluice().args(["env", "info", "legacy-sklearn"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown environment `legacy-sklearn`; known: default"), "{err}");
}

#[test]
fn a_bad_environment_folder_stops_with_file_key_and_reason() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bad-envs-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("loose")).unwrap();
    std::fs::write(dir.join("loose/requirements.txt"), "numpy==2.4.6\npandas>=2\n").unwrap();
    let out = sluice().arg("--environments").arg(&dir).args(["env", "list"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loose/requirements.txt: key `requirements`: line 2: `pandas>=2` is not pinned"),
        "{err}"
    );
}

#[test]
fn doctor_lists_every_layer() {
    common::shared(); // the environment is built
    let out = sluice().args(["doctor", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    for want in ["process", "network_namespace", "user_namespace", "landlock", "seccomp", "rlimits", "cgroup"]
    {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert_eq!(v["ok"], true, "{v}");
    // Each environment: its zygote (started for the check) and versions.
    let env = &v["environments"]["default"];
    assert_eq!(env["alive"], true, "{env}");
    assert!(env["rss_kb"].as_u64().unwrap() > 10_000, "{env}");
    assert_eq!(env["zygote"]["versions"]["pandas"], "3.1.1", "{env}");
    assert!(out.status.success());
    let active = |n: &str| layers.iter().find(|l| l["name"] == n).unwrap()["active"] == true;
    // This host has all of them (as root, cgroups too); the escape suite
    // proves each one works.
    for l in ["network_namespace", "user_namespace", "landlock", "seccomp"] {
        assert!(active(l), "{l} inactive: {v}");
    }
}

#[test]
fn a_bad_policy_stops_serve_naming_file_and_key() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("badpol-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default.toml"), "[limits]\nmax_rows = 0\n").unwrap();
    let out = sluice().args(["serve", "--bind", "127.0.0.1:0", "--policies"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default.toml") && err.contains("limits.max_rows"), "{err}");
}

/// The README's quick start: `sluice serve`, then the curl example.
#[test]
fn serve_prints_its_address_and_answers_the_readme_request() {
    let mut child = sluice()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("sluice listening on ")
        .unwrap_or_else(|| panic!("first line: {line}"))
        .to_string();

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let body = readme_request_body(&readme);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, v) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/execute-classifier"))
            .header("content-type", "application/json")
            .bearer_auth(common::key())
            .body(body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(child.stderr.take());
    assert_eq!(status, 200, "{v}");
    common::assert_status(&v, "success");
    assert_eq!(v["row_count"], 150);
}

/// The JSON body of the README's first `curl … -d '…'` example.
fn readme_request_body(readme: &str) -> String {
    let start = readme.find("-d '").expect("README has a curl -d example") + 4;
    let end = start + readme[start..].find("'\n").expect("closing quote");
    let body = readme[start..end].to_string();
    serde_json::from_str::<Value>(&body).expect("README example body is JSON");
    body
}

/// sluice as an ordinary user: the environment is built with the system
/// Python and a bootstrapped uv, the network namespace comes from a user
/// namespace, and the child is not root. Runs when the tests run as root
/// (CI does), by dropping to `nobody`.
#[test]
fn works_as_an_unprivileged_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the tests are not running as root, so they already run unprivileged");
        return;
    }
    let python = "/usr/bin/python3";
    assert!(std::path::Path::new(python).exists(), "{python} is needed (.ci/run installs it)");
    let home = std::path::PathBuf::from(format!("/tmp/sluice-nobody-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let bin = home.join("sluice");
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &bin).unwrap();
    let uid_code = home.join("uid.py");
    std::fs::write(&uid_code, "import os\ndef classify(df):\n    return [os.getuid()] * len(df)\n").unwrap();
    let net_code = home.join("net.py");
    std::fs::write(
        &net_code,
        "import socket\ndef classify(df):\n    socket.create_connection(('127.0.0.1', 5432), timeout=2)\n    return [0] * len(df)\n",
    )
    .unwrap();
    let status = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(&home).status().unwrap();
    assert!(status.success());
    let run_as_nobody = |code: &std::path::Path| -> Value {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&bin)
            .arg("--data-dir")
            .arg(home.join("data"))
            .args(["run", "--sql", "SELECT * FROM iris LIMIT 5", "--code-file"])
            .arg(code)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .env("SLUICE_PYTHON", python)
            // A persistent uv cache keeps reruns fast; the data dir is fresh.
            .env("UV_CACHE_DIR", "/tmp/sluice-nobody-uv-cache")
            .envs(network_settings())
            .current_dir(&home)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|_| panic!("stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let v = run_as_nobody(&uid_code);
    common::assert_status(&v, "success");
    assert_ne!(v["predictions"][0], 0, "the child must not be root");
    let v = run_as_nobody(&net_code);
    common::assert_status(&v, "security_violation");
    assert_eq!(v["error"]["syscall"], "socket");
    let _ = std::fs::remove_dir_all(&home);
}

/// Proxy and certificate settings of the host, which an ordinary user's
/// login would carry too.
fn network_settings() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            let k = k.to_ascii_uppercase();
            k.starts_with("SSL_CERT")
                || k.starts_with("PIP_")
                || k.ends_with("_PROXY")
                || k == "REQUESTS_CA_BUNDLE"
        })
        .collect()
}

#[test]
fn secrets_in_the_servers_environment_are_not_readable() {
    let f = code_file(
        "secrets",
        r#"
import os
def classify(df):
    found = [k for k, v in os.environ.items() if "hunter2" in v]
    for path in ["/proc/%d/environ" % os.getppid(), "/proc/1/environ", "/proc/self/environ"]:
        try:
            if b"hunter2" in open(path, "rb").read():
                found.append(path)
        except OSError:
            pass
    return [",".join(found) or "none"] * len(df)
"#,
    );
    let out = sluice()
        .args(["run", "--sql", "SELECT * FROM iris LIMIT 1", "--code-file"])
        .arg(&f)
        .env("SLUICE_TEST_SECRET", "hunter2")
        .env("DATABASE_PASSWORD", "hunter2")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_status(&v, "success");
    assert_eq!(v["predictions"], json!(["none"]));
}
