//! What a caller's code must not reach from inside its sandbox (issue
//! "Close the holes"): other processes' limits, root on the host, disk
//! beyond its budget, life after its request, server memory through a huge
//! query or a forged result frame, and other requests. Each case fails if
//! its layer is taken away. What leaves through the server's doors:
//! `containment_access.rs`.

mod common;
#[path = "support/containment.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{assert_status, execute, run, shared};
use serde_json::json;
use support::{ONE_ROW, audit_record, run_on};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// This process's (the server's) limit line for `resource` in /proc.
fn server_limit(resource: &str) -> String {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(resource))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn resource_limits_reach_only_the_child_itself() {
    let before = server_limit("Max cpu time");
    let pid = std::process::id();
    let v = run(ONE_ROW, &format!(
        "import resource\ndef classify(df):\n    resource.prlimit({pid}, resource.RLIMIT_CPU, (1, 1))\n    return [0]\n"
    ))
    .await;
    assert_status(&v, "security_violation");
    assert_eq!(v["error"]["syscall"], "prlimit64", "{v}");
    // Its own limits, by 0, by its pid, or through setrlimit, still work.
    let own = r#"
import os, resource
def classify(df):
    resource.prlimit(0, resource.RLIMIT_NOFILE, (100, 100))
    resource.prlimit(os.getpid(), resource.RLIMIT_NOFILE, (90, 90))
    resource.setrlimit(resource.RLIMIT_NOFILE, (80, 80))
    return [resource.getrlimit(resource.RLIMIT_NOFILE)[0]]
"#;
    let v = run(ONE_ROW, own).await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!([80]));
    assert_eq!(server_limit("Max cpu time"), before);
}

/// With the seccomp rule gone, the kernel's uid check still refuses: the
/// child's uid is not root outside its namespace. (An ordinary user's
/// children share the user's uid; there seccomp is the layer.)
#[tokio::test]
async fn the_kernel_refuses_other_processes_limits_without_seccomp() {
    if !is_root() {
        eprintln!("SKIPPED: children keep the server's own uid when it is not root");
        return;
    }
    let before = server_limit("Max cpu time");
    let pid = std::process::id();
    let code = format!(
        r#"
import resource
def classify(df):
    try:
        resource.prlimit({pid}, resource.RLIMIT_CPU, (1, 1))
        return ["changed"]
    except PermissionError as e:
        return [f"EPERM {{e.errno}}"]
"#
    );
    let v = run_on("open_prlimit", ONE_ROW, &code).await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!(["EPERM 1"]), "{v}");
    assert_eq!(server_limit("Max cpu time"), before);
    // The zygote too.
    let code = r#"
import os, resource
def classify(df):
    try:
        resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (1, 1))
        return ["changed"]
    except PermissionError:
        return ["EPERM"]
"#;
    let v = run_on("open_prlimit", ONE_ROW, code).await;
    assert_eq!(v["predictions"], json!(["EPERM"]), "{v}");
}

/// As root, children run as uids of a range no account uses, one per live
/// child; what they write is theirs, on a tmpfs without setuid or exec.
#[tokio::test]
async fn children_run_as_distinct_unprivileged_uids() {
    if !is_root() {
        eprintln!("SKIPPED: children keep the server's own uid when it is not root");
        return;
    }
    let code = r#"
import os, time
def classify(df):
    open("f", "w").write("x")
    os.chmod("f", 0o6755)
    st = os.stat("f")
    fs = os.statvfs(".")
    time.sleep(0.8)
    return [f"{os.getuid()} {os.getgid()} {os.getgroups()} {st.st_uid} {fs.f_flag & os.ST_NOSUID} {fs.f_flag & os.ST_NOEXEC}"]
"#;
    let (a, b) = tokio::join!(run(ONE_ROW, code), run(ONE_ROW, code));
    let mut uids = Vec::new();
    for v in [a, b] {
        assert_status(&v, "success");
        let p = v["predictions"][0].as_str().unwrap().to_string();
        let f: Vec<&str> = p.split(' ').collect();
        let uid: u64 = f[0].parse().unwrap();
        assert!(uid >= 1_990_000_000, "{p}");
        assert_eq!(f[1], f[0], "gid is the uid's own: {p}");
        assert_eq!(f[2], "[]", "no supplementary groups: {p}");
        assert_eq!(f[3], f[0], "its files are its own, never root's: {p}");
        assert_eq!(&f[4..], ["2", "8"], "scratch is nosuid and noexec: {p}");
        uids.push(uid);
    }
    assert_ne!(uids[0], uids[1], "two live children never share a uid");
}

#[tokio::test]
async fn scratch_space_is_capped_in_total() {
    let code = r#"
def classify(df):
    written = 0
    try:
        for i in range(5):
            with open(f"part{i}", "wb") as f:
                f.write(b"x" * (3 << 20))
            written += 1
    except OSError as e:
        return [f"{written} {e.errno}"]
    return [f"{written} none"]
"#;
    let v = run_on("small", ONE_ROW, code).await;
    assert_status(&v, "success");
    // 8 MB in all: two files of 3 MB fit, the third runs out of space.
    assert_eq!(v["predictions"], json!(["2 28"]), "{v}");
}

/// Code that writes a complete result itself and keeps running: the answer
/// is its result, but the process is killed with the request, and its CPU
/// time is the kernel's count, not what it claimed.
#[tokio::test]
async fn a_child_is_gone_when_its_request_ends() {
    let code = r#"
import json, os, time
def classify(df):
    t = time.process_time()
    while time.process_time() - t < 0.4:
        pass
    def is_pipe(f):
        try:
            return int(f) > 2 and os.readlink(f"/proc/self/fd/{f}").startswith("pipe")
        except OSError:
            return False
    fd = max(int(f) for f in os.listdir("/proc/self/fd") if is_pipe(f))
    frame = {"status": "success", "predictions": [0], "stdout": str(os.getpid()), "usage": {"cpu_ms": 0, "maxrss_kb": 0}}
    os.write(fd, json.dumps(frame).encode())
    os.close(fd)
    while True:
        pass
"#;
    let started = Instant::now();
    let v = run(ONE_ROW, code).await;
    assert!(started.elapsed() < Duration::from_secs(10), "answered only at the wall clock");
    assert_status(&v, "success");
    // It was SIGKILLed before the answer left; its teardown and reaping
    // finish off the request's path, in well under a second, not at the
    // wall clock (it spins until killed).
    let pid: i32 = v["stdout"].as_str().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while common::process::is_running(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(!common::process::is_running(pid), "the child {pid} outlived its request:\n{status}");
    let cpu = v["resources"]["cpu_ms"].as_u64().unwrap();
    assert!(cpu >= 350, "CPU comes from the kernel, not the child's frame: {v}");
    let rec = audit_record(shared(), &v).await;
    assert!(rec["resources"]["cpu_ms"].as_u64().unwrap() >= 350, "{rec}");
}

#[tokio::test]
async fn query_results_have_a_byte_budget() {
    // Many values that add up past the budget: fetching stops there.
    let v = run_on(
        "small",
        "SELECT printf('%.*c', 400000, 'x') AS b FROM iris LIMIT 4",
        "def classify(df):\n    return [0] * len(df)\n",
    )
    .await;
    assert_status(&v, "row_limit");
    assert_eq!(v["error"]["limit_bytes"], 1_000_000, "{v}");
    // One value over the whole budget: SQLite refuses to build it
    // (SQLITE_LIMIT_LENGTH is the budget).
    let v = run_on(
        "small",
        "SELECT replace(printf('%.*c', 600000, 'x'), 'x', 'yy') AS b FROM iris LIMIT 1",
        "def classify(df):\n    return [0]\n",
    )
    .await;
    assert_status(&v, "row_limit");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_fetch_bytes"), "{v}");
    // An aggregate that builds a big text inside the engine: the engine
    // stops it, though the row it would return is small.
    let v = run_on(
        "small",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) \
         SELECT length(group_concat(printf('%.*c', 1000, 'a'))) AS n FROM c",
        "def classify(df):\n    return [0]\n",
    )
    .await;
    assert_status(&v, "row_limit");
    // Under the budget, nothing changes.
    let v = run_on(
        "small",
        "SELECT printf('%.*c', 100000, 'x') AS b FROM iris LIMIT 4",
        "def classify(df):\n    return [len(b) for b in df['b']]\n",
    )
    .await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!([100000, 100000, 100000, 100000]));
}

#[tokio::test]
async fn text_that_is_not_unicode_is_the_codes_fault() {
    let v = run(ONE_ROW, "def classify(df):\n    return ['\\ud800']\n").await;
    assert_status(&v, "invalid_output");
    assert_eq!(v["error"]["reason"], "not_unicode", "{v}");
    assert_eq!(v["error"]["index"], 0);
    let v = run(ONE_ROW, "def classify(df):\n    raise ValueError('bad \\ud800 text')\n").await;
    assert_status(&v, "runtime_error");
}

/// The result frame can be written by the code itself: the server trusts
/// only its shape and clips what it carries to the policy's limits.
#[tokio::test]
async fn a_forged_result_frame_is_held_to_the_limits() {
    let forge = |frame: &str| {
        format!(
            r#"
import json, os
def classify(df):
    def is_pipe(f):
        try:
            return int(f) > 2 and os.readlink(f"/proc/self/fd/{{f}}").startswith("pipe")
        except OSError:
            return False
    fd = max(int(f) for f in os.listdir("/proc/self/fd") if is_pipe(f))
    data = ({frame}).encode()
    while data:
        data = data[os.write(fd, data):]
    os._exit(0)
"#
        )
    };
    let v = run(
        ONE_ROW,
        &forge(r#"json.dumps({"status": "success", "predictions": [0], "stdout": "A" * 2_000_000})"#),
    )
    .await;
    assert_status(&v, "success");
    assert_eq!(v["stdout"].as_str().unwrap().len(), 65536, "clipped to the policy's max_stdout_bytes");
    assert_eq!(v["stdout_truncated"], true);
    let started = Instant::now();
    let v = run(
        ONE_ROW,
        &forge(r#""{\"status\": \"runtime_error\", \"error\": [" + "[]," * 2_000_000 + "[]]}""#),
    )
    .await;
    assert_ne!(v["status"], "success");
    assert!(started.elapsed() < Duration::from_secs(5), "a nested frame took {:?}", started.elapsed());
    let v = run(ONE_ROW, &forge(r#"json.dumps({"status": "success", "predictions": [[1, 2]]})"#)).await;
    assert_ne!(v["status"], "success", "{v}");
    // An error report gets 16 KiB of text in all, however it is spread.
    let wide = r#"json.dumps({"status": "runtime_error", "error": {"message": "forged", **{f"f{i:02}": ["x" * 16000] * 10 for i in range(40)}}})"#;
    let v = run(ONE_ROW, &forge(wide)).await;
    assert_status(&v, "runtime_error");
    assert!(v["error"].to_string().len() < 20_000, "{} bytes of error", v["error"].to_string().len());
}

/// A request cannot take the zygote (and everyone's requests) down, and a
/// database's error message does not carry pages of row data.
#[tokio::test]
async fn one_request_harms_no_other() {
    let (status, v) = execute(
        &shared().base,
        json!({"sql_query": ONE_ROW, "classifier_code": "def classify(df):\n    return [0]\n",
               "entrypoint": "A".repeat(300_000)}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let v = run(ONE_ROW, "def classify(df):\n    return [0]\n").await;
    assert_status(&v, "success");
    let v = run(
        "SELECT json_extract('{}', (SELECT group_concat(a.id || ',' || a.species, ';') FROM iris a, iris b)) AS x",
        "def classify(df):\n    return [0] * len(df)\n",
    )
    .await;
    assert_status(&v, "sql_error");
    let m = v["error"]["db_message"].as_str().unwrap();
    assert!(m.len() < 2200, "{} bytes of database message", m.len());
}
