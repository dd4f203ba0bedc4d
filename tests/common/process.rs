//! `sluice serve` as a process, and what /proc says about processes.

use std::process::{Child, Command, Stdio};

/// Spawn `cmd` (a `sluice … serve …` command) and wait for its
/// "listening" line: the child, the bootstrap admin key it printed (a
/// fresh audit store prints one) and its base URL.
pub fn spawn_serve(mut cmd: Command) -> (Child, Option<String>, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut key, mut base) = (None, None);
    let mut line = String::new();
    while base.is_none() {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "serve exited");
        let l = line.trim();
        if l.starts_with("sluice_") {
            key = Some(l.to_string());
        }
        base = l.strip_prefix("sluice listening on ").map(String::from);
    }
    (child, key, base.unwrap())
}

/// `sluice --data-dir <shared> serve --bind 127.0.0.1:0 --audit-database
/// <audit>`, ready for more arguments.
pub fn serve_command(audit: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.arg("--data-dir").arg(super::data_dir());
    c.args(["serve", "--bind", "127.0.0.1:0", "--audit-database", audit]);
    c
}

/// A fresh SQLite audit store's URL under the temp dir.
pub fn temp_audit(tag: &str) -> String {
    let path = std::env::temp_dir().join(format!("sluice-{tag}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    format!("sqlite://{}", path.display())
}

/// RSS (kB) and open fds of `pid`.
pub fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (rss, std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count())
}

/// Is `pid` a live (not zombie) process?
pub fn is_running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

/// Pids whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // Fields after the command name (which may contain spaces).
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            rest.split_whitespace().nth(1).and_then(|pp| pp.parse::<i32>().ok()) == Some(pid)
        })
        .collect()
}
