//! Where sluice keeps its files, and settings shared by every subcommand.

use std::path::{Path, PathBuf};

/// The data directory: default audit database, demo database, built
/// environments, the runtime files the zygote loads, scratch directories.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The path is made absolute: the zygote runs with `/` as its working
    /// directory and must find its files from there.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { root }
    }

    /// `$XDG_DATA_HOME/sluice`, else `~/.local/share/sluice`.
    pub fn default_path() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("sluice");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/sluice")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn environments(&self) -> PathBuf {
        self.root.join("environments")
    }
    pub fn bootstrap(&self) -> PathBuf {
        self.root.join("bootstrap")
    }
    pub fn runtime(&self) -> PathBuf {
        self.root.join("runtime")
    }
    pub fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }
    pub fn demo_database(&self) -> PathBuf {
        self.root.join("demo.sqlite")
    }
}

/// When process `pid` started (clock ticks since boot, field 22 of its
/// stat), if it is running: with the pid, it names one process even after
/// the pid is reused.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from
    // the last `)`, which ends field 2.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Number of CPUs this process may use (the default request concurrency).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
