//! Shared by the `containment_*` tests: a server of their own whose
//! policies open one door at a time (`open_prlimit`, `small`, `channel`,
//! `counts`), and ways to ask it (`run_on`), to read an execution's audit
//! record, and to call a tool with a given key.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::common::{self, Options, Server, client, execute, start};

pub const ONE_ROW: &str = "SELECT * FROM iris LIMIT 1";

/// A policies dir with the test policies plus `open_prlimit` (a seccomp
/// profile that lets `prlimit64` through for any pid, so only the kernel's
/// uid check is left) and `small` (small scratch and fetch budgets).
pub fn policies() -> PathBuf {
    let dir = common::policies_dir();
    let mut profile: Value =
        serde_json::from_str(include_str!("../../policies/seccomp/default.json")).expect("profile JSON");
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

pub fn server() -> &'static Server {
    static S: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    S.get_or_init(|| start(Options { policies: Some(policies()), ..Options::default() }))
}

pub async fn run_on(policy: &str, sql: &str, code: &str) -> Value {
    let (status, v) =
        execute(&server().base, json!({"sql_query": sql, "classifier_code": code, "policy": policy})).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The audit record of the execution `v` answered, read with the admin key.
pub async fn audit_record(server: &Server, v: &Value) -> Value {
    let id = v["execution_id"].as_str().unwrap();
    client().get(format!("{}/audit/{id}", server.base)).send().await.unwrap().json().await.unwrap()
}

/// POST /tools/call with `key`.
pub async fn tool_call(server: &Server, key: &str, call: &Value) -> Value {
    let r = reqwest::Client::new().post(format!("{}/tools/call", server.base)).bearer_auth(key).json(call);
    r.send().await.unwrap().json().await.unwrap()
}
