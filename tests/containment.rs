//! What a caller's code must not reach besides the rows (issue "Close the
//! holes"): other processes' limits, root on the host, disk beyond its
//! budget, life after its request, server memory through a huge query, and
//! data through a key without the `execute` role. Each case fails if its
//! layer is taken away.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Options, Server, assert_status, client, execute, run, shared, start};
use serde_json::{Value, json};

const ONE_ROW: &str = "SELECT * FROM iris LIMIT 1";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A policies dir with the test policies plus `open_prlimit` (a seccomp
/// profile that lets `prlimit64` through for any pid, so only the kernel's
/// uid check is left) and `small` (small scratch and fetch budgets).
fn policies() -> PathBuf {
    let dir = common::policies_dir();
    let mut profile: Value =
        serde_json::from_str(include_str!("../policies/seccomp/default.json")).expect("profile JSON");
    for filter in ["allow", "denied"] {
        let rules = profile[filter]["filter"].as_array_mut().unwrap();
        rules.retain(|r| r["syscall"] != "prlimit64");
        if filter == "allow" {
            rules.push(json!({"syscall": "prlimit64"}));
        }
    }
    std::fs::create_dir_all(dir.join("seccomp")).unwrap();
    std::fs::write(dir.join("seccomp/open_prlimit.json"), profile.to_string()).unwrap();
    std::fs::write(
        dir.join("open_prlimit.toml"),
        "description = \"prlimit64 open in seccomp, for the kernel-layer test\"\n[sandbox]\n\
         seccomp_profile = \"open_prlimit\"\nallow_degraded = [\"cgroup\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("small.toml"),
        "description = \"Small scratch and fetch budgets\"\n[limits]\nmax_scratch_mb = 8\n\
         max_file_size_mb = 4\nmax_fetch_bytes = 1000000\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("channel.toml"),
        "description = \"A narrow output channel\"\n[output]\nlabels = \"numbers\"\nmax_distinct_labels = 3\n\
         stdout = \"audit\"\ndescribe_samples = false\nscores = false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("counts.toml"),
        "description = \"Counts only\"\n[output]\ncounts_only = true\nmin_group_size = 10\n",
    )
    .unwrap();
    dir
}

fn server() -> &'static Server {
    static S: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    S.get_or_init(|| start(Options { policies: Some(policies()), ..Options::default() }))
}

async fn run_on(policy: &str, sql: &str, code: &str) -> Value {
    let (status, v) =
        execute(&server().base, json!({"sql_query": sql, "classifier_code": code, "policy": policy})).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The audit record of the execution `v` answered, read with the admin key.
async fn audit_record(server: &Server, v: &Value) -> Value {
    let id = v["execution_id"].as_str().unwrap();
    client().get(format!("{}/audit/{id}", server.base)).send().await.unwrap().json().await.unwrap()
}

/// POST /tools/call with `key`.
async fn tool_call(server: &Server, key: &str, call: &Value) -> Value {
    let r = reqwest::Client::new().post(format!("{}/tools/call", server.base)).bearer_auth(key).json(call);
    r.send().await.unwrap().json().await.unwrap()
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
    let pid = v["stdout"].as_str().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(!status.contains("python"), "the child {pid} outlived its request:\n{status}");
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
async fn a_key_without_the_execute_role_reads_no_rows_through_the_tools() {
    let (_, secret) =
        shared().app.audit.create_key("auditor", &[sluice::audit::keys::Role::Audit], None).await.unwrap();
    let http = reqwest::Client::new();
    for call in [
        json!({"type": "tool_use", "id": "t1", "name": "describe_table", "input": {"table": "iris"}}),
        json!({"type": "tool_use", "id": "t2", "name": "list_tables", "input": {}}),
        json!({"type": "tool_use", "id": "t3", "name": "execute_classifier",
               "input": {"sql_query": ONE_ROW, "classifier_code": "def classify(df):\n    return [0]\n"}}),
    ] {
        let r = tool_call(shared(), &secret, &call).await;
        assert_eq!(r["is_error"], true, "{call}: {r}");
        let text = r["content"].as_str().unwrap();
        assert!(text.contains("`execute`") && !text.contains("setosa"), "{call}: {r}");
    }
    let r = http.get(format!("{}/schema", shared().base)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn readiness_tells_strangers_only_whether_it_is_ready() {
    let base = &shared().base;
    let (_, executor) =
        shared().app.audit.create_key("runner", &[sluice::audit::keys::Role::Execute], None).await.unwrap();
    let anonymous = reqwest::Client::new().get(format!("{base}/readyz")).send().await.unwrap();
    let with_execute =
        reqwest::Client::new().get(format!("{base}/readyz")).bearer_auth(&executor).send().await.unwrap();
    for r in [anonymous, with_execute] {
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["ready"], true, "{v}");
        assert_eq!(v["database"], json!({"reachable": true}), "the database shown without an audit key: {v}");
        assert_eq!(v["environments"]["default"], json!({"alive": true}), "sandbox facts shown: {v}");
        assert!(!v.to_string().contains("sqlite"), "{v}");
    }
    let v: Value = client().get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
    assert!(v["database"]["url"].is_string() && v["environments"]["default"]["layers"].is_array(), "{v}");
}

#[tokio::test]
async fn an_audit_key_limited_to_a_policy_sees_only_that_policy() {
    let base = &shared().base;
    // One record under `default`, one under `tight`.
    let v = run(ONE_ROW, "def classify(df):\n    return [0]\n").await;
    let other = v["execution_id"].as_str().unwrap().to_string();
    let (_, v) = execute(
        base,
        json!({"sql_query": ONE_ROW, "classifier_code": "def classify(df):\n    return [0]\n", "policy": "tight"}),
    )
    .await;
    let mine = v["execution_id"].as_str().unwrap().to_string();
    let (_, secret) = shared()
        .app
        .audit
        .create_key("tight-auditor", &[sluice::audit::keys::Role::Audit], Some(&["tight".to_string()]))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let page: Value = http
        .get(format!("{base}/audit?limit=500"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = page["records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["execution_id"] == mine.as_str()), "{page}");
    assert!(records.iter().all(|r| r["policy"] == "tight"), "other policies' records leaked: {page}");
    let r = http.get(format!("{base}/audit/{other}")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http.get(format!("{base}/audit/{mine}")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
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

#[tokio::test]
async fn the_review_pages_defend_the_browser() {
    let base = &shared().base;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(format!("{base}/ui/login?next=/ui/audit")).send().await.unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let token = set.strip_prefix("sluice_login=").unwrap().split(';').next().unwrap().to_string();
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let form = |csrf: &str, next: &str| format!("key={}&csrf={csrf}&next={next}", common::key());
    // A form posted from elsewhere (no token) signs nobody in.
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("", "/ui/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    // CR/LF in `next` is no way to split headers, nor an error.
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("sluice_login={token}"))
        .header("x-forwarded-proto", "https")
        .body(form(&token, "/ui/audit%0d%0aSet-Cookie:%20x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "{:?}", r.headers());
    assert_eq!(r.headers()["location"], "/ui/audit");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn key_names_cannot_carry_terminal_escapes() {
    let e = shared()
        .app
        .audit
        .create_key("evil\u{1b}]0;owned\u{7}", &[sluice::audit::keys::Role::Audit], None)
        .await;
    assert!(e.is_err(), "a control character in a key name was accepted");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_let_go() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = shared().base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /execute-classifier HTTP/1.1\r\nHost: sluice\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(25), s.read_to_end(&mut buf))
        .await
        .expect("a half-sent request still holds its connection after 25 s")
        .ok();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5), "closed after {waited:?}: too eager");
    assert_eq!(sluice::server::HEADER_TIMEOUT, Duration::from_secs(10));
}

#[tokio::test]
async fn one_key_holds_a_bounded_number_of_mcp_sessions() {
    let base = &shared().base;
    let (_, secret) =
        shared().app.audit.create_key("sessions", &[sluice::audit::keys::Role::Execute], None).await.unwrap();
    let http = reqwest::Client::new();
    let open = || {
        http.post(format!("{base}/mcp"))
            .bearer_auth(&secret)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
            .send()
    };
    let mut ids = Vec::new();
    for _ in 0..sluice::api::MAX_MCP_SESSIONS_PER_KEY {
        let r = open().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        ids.push(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
    }
    let r = open().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_sessions", "{v}");
    // Closing one makes room; another key is not affected.
    let r = http
        .delete(format!("{base}/mcp"))
        .bearer_auth(&secret)
        .header("mcp-session-id", &ids[0])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(open().await.unwrap().status().as_u16(), 200);
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

/// Code that sees rows can return them as labels or print them; a policy
/// can narrow what leaves, and the audit keeps what did.
#[tokio::test]
async fn the_output_channel_is_bounded_by_the_policy() {
    const IRIS: &str = "SELECT * FROM iris";
    // Every row back as text labels: refused under numbers-only labels.
    let exfil = "def classify(df):\n    return df.astype(str).agg('|'.join, axis=1)\n";
    let v = run(IRIS, exfil).await;
    assert_status(&v, "success");
    assert!(v["predictions"][0].as_str().unwrap().contains('|'), "the channel exists by default: {v}");
    let v = run_on("channel", IRIS, exfil).await;
    assert_status(&v, "invalid_output");
    assert_eq!(v["error"]["reason"], "label_kind", "{v}");
    // Numbers, but one per row: too many distinct labels.
    let v = run_on("channel", IRIS, "def classify(df):\n    return list(range(len(df)))\n").await;
    assert_eq!(v["error"]["reason"], "too_many_labels", "{v}");
    // Printed rows stay in the audit record.
    let code = "def classify(df):\n    print(df.to_csv())\n    return [int(x) for x in df['id'] % 3]\n";
    let v = run_on("channel", IRIS, code).await;
    assert_status(&v, "success");
    assert_eq!(v["stdout"], "", "{v}");
    let rec = audit_record(server(), &v).await;
    let out = &rec["output"];
    assert_eq!(out["returned"], "labels", "{rec}");
    assert_eq!(out["distinct_labels"], 3);
    assert_eq!(out["labels_sha256"].as_str().unwrap().len(), 64);
    assert!(out["stdout_excerpt"].as_str().unwrap().contains("sepal_length"), "{out}");
    // Scores are 64 bits a row: dropped under this policy.
    let code =
        "def classify(df):\n    return {'labels': [0] * len(df), 'scores': [float(x) for x in df['id']]}\n";
    let v = run_on("channel", IRIS, code).await;
    assert_status(&v, "success");
    assert!(v["scores"].is_null(), "{v}");
    // Counts only, small groups left out.
    let code =
        "def classify(df):\n    return ['rare' if i < 3 else s for i, s in enumerate(df['species'])]\n";
    let v = run_on("counts", IRIS, code).await;
    assert_eq!(v["status"], "success", "{v}");
    assert!(v["predictions"].is_null() && v["scores"].is_null(), "{v}");
    let counts = v["label_counts"].as_object().unwrap();
    assert!(!counts.contains_key("rare"), "a group of 3 under a minimum of 10: {v}");
    assert!(v["row_count"].is_null(), "an exact count would give the small groups away: {v}");
    assert_eq!(counts.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 147);
    // describe_table without sample rows.
    let call = json!({"type": "tool_use", "id": "d", "name": "describe_table",
                      "input": {"table": "iris", "policy": "channel"}});
    let r = tool_call(server(), common::key(), &call).await;
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured_content"]["sample_rows"], json!([]), "{r}");
}

/// A request refused before it reached the database keeps an excerpt of a
/// long text (and the hash of all of it); one that ran keeps it whole.
#[tokio::test]
async fn refused_requests_cost_the_audit_store_little() {
    let long_sql = format!("SELECT 1 AS x /* {} */ FROM nowhere_at_all", "y".repeat(200_000));
    let v = run(&long_sql, "def classify(df):\n    return [0]\n").await;
    let rec = audit_record(shared(), &v).await;
    let kept = rec["sql_query"].as_str().unwrap();
    assert!(kept.len() < 9 * 1024 && kept.contains("200"), "{} bytes kept", kept.len());
    assert_eq!(rec["sql_sha256"], sluice::audit::sha256_hex(&long_sql));
    let code = format!("# {}\ndef classify(df):\n    return [0] * len(df)\n", "z".repeat(20_000));
    let v = run(ONE_ROW, &code).await;
    assert_status(&v, "success");
    let rec = audit_record(shared(), &v).await;
    assert_eq!(rec["classifier_code"].as_str().unwrap(), code, "code that ran is kept whole");
    let verify: Value =
        client().get(format!("{}/audit/verify", shared().base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
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
