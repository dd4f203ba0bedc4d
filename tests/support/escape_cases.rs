// The escape suite: code that tries to leave the sandbox, each case with
// the exact verdict it must get. Every layer of DESIGN §5 has a case that
// would fail if that layer were removed. Included by `escape.rs` (the
// built-in environment) and `escape_environments.rs` (an operator's
// environment with other versions and no pyarrow), which define
// `shared`, `run` and `run_with` for their own server.

use std::time::Duration;

use common::{assert_status, execute};
use serde_json::{Value, json};

const ONE_ROW: &str = "SELECT * FROM iris LIMIT 1";

/// Run `body` as the body of classify(df) over one row.
async fn attempt(body: &str) -> Value {
    let code = format!(
        "import os, sys, socket, ctypes, signal, subprocess\ndef classify(df):\n{}\n    return [0]\n",
        indent(body)
    );
    run(ONE_ROW, &code).await
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

async fn blocked_syscall(body: &str, syscall: &str) {
    let v = attempt(body).await;
    assert_status(&v, "security_violation");
    assert_eq!(v["error"]["syscall"], syscall, "{body}: {v}");
}

async fn denied_path(body: &str) {
    let v = attempt(body).await;
    assert_status(&v, "security_violation");
    assert_eq!(v["error"]["type"], "PermissionError", "{body}: {v}");
}

#[tokio::test]
async fn network_connections_are_blocked() {
    blocked_syscall("socket.create_connection(('127.0.0.1', 5432), timeout=2)", "socket").await;
    blocked_syscall(
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 53))",
        "socket",
    )
    .await;
    blocked_syscall("socket.socket(socket.AF_UNIX).connect('/var/run/postgresql/.s.PGSQL.5432')", "socket")
        .await;
    blocked_syscall("socket.socketpair()", "socketpair").await;
    // Name resolution reads /etc (landlock) or opens a socket (seccomp).
    let v = attempt("socket.getaddrinfo('pypi.org', 443)").await;
    assert_status(&v, "security_violation");
}

#[tokio::test]
async fn files_outside_the_scratch_dir_are_invisible() {
    denied_path("open('/etc/passwd').read()").await;
    denied_path("open('/etc/hostname').read()").await;
    let data = common::data_dir();
    denied_path(&format!("open({:?}, 'rb').read(16)", data.join("demo.sqlite").display().to_string())).await;
    denied_path(&format!("os.listdir({:?})", data.display().to_string())).await;
    denied_path(&format!("open({:?}, 'rb').read(16)", data.join("audit.sqlite").display().to_string())).await;
    denied_path("open('/tmp/sluice-escape-test', 'w').write('x')").await;
    denied_path("open('/dev/shm/sluice-escape-test', 'w').write('x')").await;
    denied_path(&format!("open('/proc/{}/environ').read()", std::process::id())).await;
    denied_path("open('/proc/1/environ').read()").await;
    denied_path("os.listdir('/root')").await;
    denied_path("os.listdir('/proc')").await;
    assert!(!std::path::Path::new("/tmp/sluice-escape-test").exists());
}

#[tokio::test]
async fn processes_cannot_be_started() {
    blocked_syscall("os.fork()", "clone").await;
    blocked_syscall("os.execv('/bin/sh', ['sh', '-c', 'id'])", "execve").await;
    blocked_syscall("while True:\n    os.fork()", "clone").await;
    // posix_spawn (behind os.system and subprocess) blocks signals around
    // clone, so the kernel kills the child instead of letting the reporter
    // name the call: still a security_violation, with no syscall name.
    for body in ["os.system('id')", "subprocess.run(['id'])", "os.posix_spawn('/bin/true', ['true'], {})"] {
        let v = attempt(body).await;
        assert_status(&v, "security_violation");
        match v["error"]["syscall"].as_str() {
            Some(s) => assert!(["clone", "vfork", "execve"].contains(&s), "{body}: {v}"),
            None => {
                assert!(v["error"]["message"].as_str().unwrap().contains("start a process"), "{body}: {v}")
            }
        }
    }
    // Threads are fine.
    let v =
        attempt("import threading\nt = threading.Thread(target=print, args=('hi',))\nt.start(); t.join()")
            .await;
    assert_status(&v, "success");
}

#[tokio::test]
async fn signals_reach_only_the_child_itself() {
    blocked_syscall("os.kill(os.getppid(), signal.SIGKILL)", "kill").await;
    blocked_syscall(&format!("os.kill({}, signal.SIGTERM)", std::process::id()), "kill").await;
    blocked_syscall("os.kill(1, signal.SIGTERM)", "kill").await;
    // Signals to itself work.
    let v =
        attempt("signal.signal(signal.SIGUSR1, lambda *a: None)\nos.kill(os.getpid(), signal.SIGUSR1)").await;
    assert_status(&v, "success");
}

#[tokio::test]
async fn kill_all_while_another_request_runs() {
    let base = shared().base.clone();
    let slow = json!({
        "sql_query": ONE_ROW,
        "classifier_code": "import time\ndef classify(df):\n    time.sleep(1.5)\n    return ['survived']\n",
    });
    let running = tokio::spawn(async move { execute(&base, slow).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    blocked_syscall("os.kill(-1, signal.SIGKILL)", "kill").await;
    let (status, v) = running.await.unwrap();
    assert_eq!(status, 200);
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!(["survived"]));
}

#[tokio::test]
async fn the_child_is_unprivileged() {
    let code = r#"
import os
def classify(df):
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    return [os.getuid(), os.getgid(), status["CapEff"].strip(), status["NoNewPrivs"].strip(), status["Seccomp"].strip()]
"#;
    let v = run("SELECT * FROM iris LIMIT 5", code).await;
    assert_status(&v, "success");
    let p = &v["predictions"];
    assert_ne!(p[0], 0, "uid");
    assert_ne!(p[1], 0, "gid");
    assert_eq!(p[2], "0000000000000000", "no capabilities");
    assert_eq!(p[3], "1", "no_new_privs");
    assert_eq!(p[4], "2", "seccomp filter mode");
}

#[tokio::test]
async fn only_its_own_pipes_are_open() {
    // Its rows' memfd (Python's mmap keeps a copy of the fd) is sealed: the
    // child can neither change nor grow the pages the server wrote.
    let code = r#"
import os
def classify(df):
    fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
    kinds = []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            kinds.append("gone")
            continue
        kinds.append(target.split(":")[0])
        if target.startswith("/memfd:"):
            for name, change in (("write", lambda: os.pwrite(fd, b"x", 0)), ("grow", lambda: os.ftruncate(fd, 1 << 30)),
                                 ("shrink", lambda: os.ftruncate(fd, 0))):
                try:
                    change()
                    kinds.append(f"memfd-{name}-worked")
                except OSError:
                    pass
    return [",".join(kinds)]
"#;
    let v = run(ONE_ROW, code).await;
    assert_status(&v, "success");
    let kinds = v["predictions"][0].as_str().unwrap().to_string();
    // 0-2 on /dev/null, the result pipe, the rows, and the directory being listed.
    let allowed = ["/dev/null", "pipe", "/memfd", "/proc/", "gone"];
    for k in kinds.split(',') {
        assert!(allowed.iter().any(|a| k.starts_with(a)), "unexpected fd {k} in {kinds}");
    }
    assert!(kinds.split(',').filter(|k| *k == "pipe").count() <= 2, "{kinds}");
    assert!(kinds.split(',').filter(|k| *k == "/memfd").count() <= 1, "{kinds}");
}

#[tokio::test]
async fn nothing_written_is_visible_to_the_next_request() {
    let write =
        "import os\ndef classify(df):\n    open('leak.txt', 'w').write('secret')\n    return [os.getcwd()]\n";
    let v = run(ONE_ROW, write).await;
    assert_status(&v, "success");
    let first_dir = v["predictions"][0].as_str().unwrap().to_string();
    assert!(!std::path::Path::new(&first_dir).exists(), "scratch dir {first_dir} was not removed");
    let read = "import os\ndef classify(df):\n    return [','.join(os.listdir('.')) or 'empty']\n";
    let v = run(ONE_ROW, read).await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!(["empty"]));
}

#[tokio::test]
async fn raw_syscalls_from_other_interfaces_are_blocked() {
    // x32 ABI: the syscall number with bit 30 set.
    let v = attempt("ctypes.CDLL(None).syscall(ctypes.c_long(0x40000000 | 39))").await;
    assert_status(&v, "security_violation");
    assert_eq!(v["error"]["syscall_nr"], 0x40000000 | 39);
    // The 32-bit `int 0x80` interface: the arch check kills the process.
    let code = r#"
import ctypes, mmap
def classify(df):
    buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(bytes([0xB8, 0x14, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20 (getpid); int 0x80; ret
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
    return [0]
"#;
    let v = run(ONE_ROW, code).await;
    assert_status(&v, "security_violation");
}

/// Walk every rule of the shipped profile's `denied` filter: call the
/// syscall raw (through ctypes) with arguments that match the rule, and
/// expect the sandbox to name it.
#[tokio::test]
async fn every_deny_rule_of_the_shipped_profile_holds() {
    let profile: Value =
        serde_json::from_str(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/seccomp/default.json"))).expect("profile JSON");
    let rules = profile["denied"]["filter"].as_array().unwrap();
    assert!(rules.len() > 50);
    let mut cases = Vec::new();
    for rule in rules {
        let name = rule["syscall"].as_str().unwrap();
        let nr = sluice_sandbox::syscalls::NAMES
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name}"));
        let mut args = [0u64; 6];
        for cond in rule["args"].as_array().into_iter().flatten() {
            let i = cond["index"].as_u64().unwrap() as usize;
            let val = cond["val"].as_u64().unwrap();
            args[i] = match &cond["op"] {
                Value::String(op) if op == "eq" => val,
                Value::String(op) if op == "ne" => 1, // init: never the child itself
                Value::Object(m) if m.contains_key("masked_eq") => {
                    // clone without CLONE_THREAD: a plain SIGCHLD fork.
                    if val == 0 { 17 } else { val | 0x0001_0000 | 17 }
                }
                other => panic!("{name}: unhandled op {other}"),
            };
        }
        cases.push((name.to_string(), nr, args));
    }
    // Several rules per request would stop at the first; one request each,
    // a few at a time.
    for chunk in cases.chunks(8) {
        let mut tasks = Vec::new();
        for (name, nr, args) in chunk.iter().cloned() {
            tasks.push(tokio::spawn(async move {
                let a: Vec<String> = args.iter().map(|v| format!("ctypes.c_long({})", *v as i64)).collect();
                let body = format!(
                    "libc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\nlibc.syscall(ctypes.c_long({nr}), {})",
                    a.join(", ")
                );
                (name, attempt(&body).await)
            }));
        }
        for t in tasks {
            let (name, v) = t.await.unwrap();
            assert_eq!(v["status"], "security_violation", "{name}: {v}");
            assert_eq!(v["error"]["syscall"], name.as_str(), "{name}: {v}");
        }
    }
}

#[tokio::test]
async fn memory_bomb_is_a_memory_limit() {
    // Touched pages, allocated in chunks: the cgroup (where the host has
    // one) or the address-space limit stops it.
    let v = run_with(json!({
        "sql_query": ONE_ROW,
        "classifier_code": "def classify(df):\n    hog = []\n    while True:\n        hog.append(bytearray(16 * 1024 * 1024))\n",
        "max_memory": 200,
    }))
    .await;
    assert_status(&v, "memory_limit");
    assert_eq!(v["error"]["limit_mb"], 200);
}

#[tokio::test]
async fn infinite_loop_and_huge_file_are_categorized() {
    let v = run_with(json!({
        "sql_query": ONE_ROW,
        "classifier_code": "def classify(df):\n    while True:\n        pass\n",
        "timeout": 0.5,
    }))
    .await;
    assert_status(&v, "timeout");
    let v =
        attempt("with open('big', 'wb') as f:\n    for _ in range(200):\n        f.write(b'x' * (1 << 20))")
            .await;
    assert_status(&v, "runtime_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("File too large"), "{v}");
}

#[tokio::test]
async fn the_child_has_its_own_network_namespace() {
    // Independent of seccomp: the interfaces the child's namespace holds.
    let code = "def classify(df):\n    lines = open('/proc/self/net/dev').read().splitlines()[2:]\n    return [','.join(sorted(l.split(':')[0].strip() for l in lines))]\n";
    let v = run(ONE_ROW, code).await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!(["lo"]));
}

#[tokio::test]
async fn rlimits_are_in_force() {
    let code = r#"
import resource
def classify(df):
    r = resource
    return [r.getrlimit(r.RLIMIT_NOFILE)[1], r.getrlimit(r.RLIMIT_FSIZE)[1], r.getrlimit(r.RLIMIT_CORE)[1],
            r.getrlimit(r.RLIMIT_CPU)[1], r.getrlimit(r.RLIMIT_NPROC)[1], r.getrlimit(r.RLIMIT_AS)[1] > 0]
"#;
    let v = run("SELECT * FROM iris LIMIT 6", code).await;
    assert_status(&v, "success");
    // policies/default.toml: 256 files, 64 MiB files, no core, 120+1 s CPU, 256 threads.
    assert_eq!(v["predictions"], json!([256, 64 * 1024 * 1024, 0, 121, 256, true]));
}

#[tokio::test]
async fn the_kernel_kills_at_the_cgroup_memory_limit() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: per-request cgroups need root here (the layer is reported as degraded)");
        return;
    }
    // (A request first: an on-demand environment starts with it.)
    assert_status(&run(ONE_ROW, "def classify(df):\n    return [0]\n").await, "success");
    let ready: Value =
        common::client().get(format!("{}/readyz", shared().base)).send().await.unwrap().json().await.unwrap();
    let layers = ready["environments"][ENVIRONMENT]["layers"].as_array().unwrap();
    let cgroup = layers.iter().find(|l| l["name"] == "cgroup").unwrap();
    assert_eq!(cgroup["active"], true, "as root the cgroup layer must be active: {cgroup}");
    // numpy touches every page: far below the address-space limit
    // (memory + 256 MB headroom), far above the cgroup's (memory + 64 MB).
    let v = run_with(json!({
        "sql_query": ONE_ROW,
        "classifier_code": "import numpy as np\ndef classify(df):\n    x = np.ones(400 * 1024 * 1024 // 8)\n    return [float(x.sum())]\n",
        "max_memory": 200,
    }))
    .await;
    assert_status(&v, "memory_limit");
    assert!(v["error"]["message"].as_str().unwrap().contains("out-of-memory killer"), "{v}");
    let in_cgroup = run(ONE_ROW, "def classify(df):\n    return [open('/proc/self/cgroup').read()]\n").await;
    assert_status(&in_cgroup, "success");
    let text = in_cgroup["predictions"][0].as_str().unwrap();
    assert!(text.contains(&format!("sluice-{}-", std::process::id())), "{text}");
}
