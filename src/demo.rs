//! The demo SQLite database (iris, wine, breast_cancer), made once in the
//! data dir from the datasets bundled inside scikit-learn.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::config::DataDir;
use crate::environment::Environment;

const SCRIPT: &str = include_str!("../sandbox/python/make_demo.py");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("creating the demo database failed: {0}")]
    Script(String),
}

/// Path of the demo database, creating it first if needed.
pub fn ensure(data: &DataDir, env: &Environment) -> Result<PathBuf, DemoError> {
    let path = data.demo_database();
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(data.root()).map_err(|source| DemoError::Io {
        what: "creating",
        path: data.root().into(),
        source,
    })?;
    // Unique per caller: two servers of one process may create it at once.
    let tmp =
        data.root().join(format!(".demo.{}.{}.sqlite", std::process::id(), uuid::Uuid::new_v4().simple()));
    let _ = std::fs::remove_file(&tmp);
    let out = Command::new(&env.python)
        .args(["-I", "-B", "-c", SCRIPT])
        .arg(&tmp)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DemoError::Script(e.to_string()))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(DemoError::Script(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    // rename is atomic: a concurrent creator's file is as good as ours.
    std::fs::rename(&tmp, &path).map_err(|source| DemoError::Io {
        what: "renaming",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
