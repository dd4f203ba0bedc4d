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

/// Number of CPUs this process may use (the default request concurrency).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
