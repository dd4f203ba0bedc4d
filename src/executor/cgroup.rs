//! A cgroup per request for memory and pids, so memory limits count real
//! pages (not address space) and an OOM kill can be proven afterwards.
//! cgroup v2 where its memory and pids controllers are available, else v1;
//! hosts with neither (or without permission) run on rlimits alone, and
//! the layer report says so.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// Room above the request's memory budget for the harness's own pages
/// (its copy of the rows, the DataFrame, copy-on-write of touched pages).
pub const HEADROOM_MB: u64 = 64;

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    V2 { base: PathBuf },
    V1 { memory: PathBuf, pids: PathBuf },
}

/// This server's cgroup parent(s), created at start-up.
#[derive(Debug)]
pub struct Cgroups {
    kind: Kind,
}

/// One request's cgroup.
#[derive(Debug)]
pub struct RequestCgroup {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` files the server writes the child's pid into.
    procs: Vec<PathBuf>,
    /// Where the kernel counts OOM kills (`memory.events` / `memory.oom_control`).
    events: PathBuf,
    /// The memory limit's file, then (v1) the memory+swap one.
    limits: Vec<PathBuf>,
}

/// Remove the (empty) groups of sluice servers that are no longer running.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        // `sluice-<pid>-<n>` (or `sluice-<pid>` from older servers).
        let pid = name
            .strip_prefix("sluice-")
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(e.path()) {
            for c in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

impl Cgroups {
    /// Set up `sluice-<pid>-<n>` under v2 or v1, or say why not. `n`
    /// tells apart the servers of one process (tests run several), so one
    /// that stops cannot remove another's groups.
    pub fn detect() -> Result<Cgroups, String> {
        static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("sluice-{}-{n}", std::process::id());
        let root = Path::new(ROOT);
        for dir in [root.to_path_buf(), root.join("memory"), root.join("pids")] {
            remove_stale(&dir);
        }
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        let mut why = Vec::new();
        if has("memory") && has("pids") {
            match Self::setup_v2(root, &tag) {
                Ok(base) => return Ok(Cgroups { kind: Kind::V2 { base } }),
                Err(e) => why.push(format!("cgroup v2: {e}")),
            }
        } else {
            why.push("cgroup v2: memory and pids controllers are not enabled".into());
        }
        let (mem, pids) = (root.join("memory"), root.join("pids"));
        if mem.join("memory.limit_in_bytes").exists() && pids.join("cgroup.procs").exists() {
            let (m, p) = (mem.join(&tag), pids.join(&tag));
            match std::fs::create_dir_all(&m).and_then(|_| std::fs::create_dir_all(&p)) {
                Ok(()) => return Ok(Cgroups { kind: Kind::V1 { memory: m, pids: p } }),
                Err(e) => why.push(format!("cgroup v1: cannot create {}: {e}", m.display())),
            }
        } else {
            why.push("cgroup v1: no memory and pids hierarchies".into());
        }
        Err(why.join("; "))
    }

    fn setup_v2(root: &Path, tag: &str) -> std::io::Result<PathBuf> {
        // Controllers must be enabled on the way down: at the root, then in
        // our parent (which holds no processes, only request groups).
        write(&root.join("cgroup.subtree_control"), "+memory +pids")?;
        let base = root.join(tag);
        std::fs::create_dir_all(&base)?;
        write(&base.join("cgroup.subtree_control"), "+memory +pids")?;
        Ok(base)
    }

    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::V2 { base } => format!("cgroup v2 at {}", base.display()),
            Kind::V1 { memory, pids } => format!("cgroup v1 at {} and {}", memory.display(), pids.display()),
        }
    }

    /// A cgroup for one request with its limits set.
    pub fn create(&self, id: &str, memory_mb: u64, max_pids: u64) -> std::io::Result<RequestCgroup> {
        let bytes = ((memory_mb + HEADROOM_MB) * 1024 * 1024).to_string();
        match &self.kind {
            Kind::V2 { base } => {
                let dir = base.join(id);
                std::fs::create_dir(&dir)?;
                let rc = RequestCgroup {
                    dirs: vec![dir.clone()],
                    procs: vec![dir.join("cgroup.procs")],
                    events: dir.join("memory.events"),
                    limits: vec![dir.join("memory.max")],
                };
                write(&dir.join("memory.max"), &bytes)?;
                let _ = write(&dir.join("memory.swap.max"), "0");
                write(&dir.join("pids.max"), &max_pids.to_string())?;
                Ok(rc)
            }
            Kind::V1 { memory, pids } => {
                let (m, p) = (memory.join(id), pids.join(id));
                std::fs::create_dir(&m)?;
                let rc = RequestCgroup {
                    dirs: vec![m.clone(), p.clone()],
                    procs: vec![m.join("cgroup.procs"), p.join("cgroup.procs")],
                    events: m.join("memory.oom_control"),
                    limits: vec![m.join("memory.limit_in_bytes"), m.join("memory.memsw.limit_in_bytes")],
                };
                std::fs::create_dir(&p)?;
                write(&m.join("memory.limit_in_bytes"), &bytes)?;
                // Without swap accounting the limit could be dodged by swapping.
                let _ = write(&m.join("memory.swappiness"), "0");
                let _ = write(&m.join("memory.memsw.limit_in_bytes"), &bytes);
                write(&p.join("pids.max"), &max_pids.to_string())?;
                Ok(rc)
            }
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let dirs = match &self.kind {
            Kind::V2 { base } => vec![base.clone()],
            Kind::V1 { memory, pids } => vec![memory.clone(), pids.clone()],
        };
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl RequestCgroup {
    /// Move `pid` into this cgroup (off the async threads: on cgroup v1 the
    /// move can wait for an RCU grace period).
    pub async fn join(&self, pid: i32) -> std::io::Result<()> {
        let procs = self.procs.clone();
        tokio::task::spawn_blocking(move || procs.iter().try_for_each(|p| write(p, &pid.to_string())))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Lower the memory limit to a request's `memory_mb` (plus the
    /// harness's headroom). The memory limit first: v1 refuses a
    /// memory+swap limit below it. Without swap accounting there is no
    /// memory+swap file, which is fine.
    pub fn set_memory(&self, memory_mb: u64) -> std::io::Result<()> {
        let bytes = ((memory_mb + HEADROOM_MB) * 1024 * 1024).to_string();
        let (first, rest) = self.limits.split_first().expect("a memory limit file");
        write(first, &bytes)?;
        for f in rest {
            let _ = write(f, &bytes);
        }
        Ok(())
    }

    /// The most memory the cgroup was charged (pages the child wrote,
    /// including tmpfs and memfd pages it no longer maps), in KiB.
    pub fn peak_kb(&self) -> Option<u64> {
        let dir = self.dirs.first()?;
        ["memory.peak", "memory.max_usage_in_bytes"]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map(|b| b / 1024)
    }

    /// Did the kernel OOM-kill a process of this cgroup?
    pub fn oom_killed(&self) -> bool {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.lines().any(|l| {
            let mut it = l.split_whitespace();
            it.next() == Some("oom_kill")
                && it.next().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0)
        })
    }

    /// Remove the cgroup once its process has exited (it may take a moment
    /// for the kernel to let go of a dying process).
    pub async fn remove(self) {
        for _ in 0..50 {
            if self.dirs.iter().all(|d| std::fs::remove_dir(d).is_ok() || !d.exists()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tracing::warn!("could not remove cgroup {:?}", self.dirs);
    }
}
