//! The files the zygote runs from: the Python harness (an entry point and
//! the modules it imports) and the sandbox cdylib, all embedded in this
//! binary and written once per content hash under `<data dir>/runtime/<hash>/`,
//! so a new build never runs old files and a running server's files are never
//! overwritten.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The entry point the zygote is started with; it imports the others from
/// its own directory.
const HARNESS: &str = "harness.py";

/// Every Python file of the harness, by file name. A module harness.py
/// imports must be listed here (the `every_module_*` test checks).
const PYTHON: &[(&str, &[u8])] = &[
    ("harness.py", include_bytes!("../sandbox/python/harness.py")),
    ("native.py", include_bytes!("../sandbox/python/native.py")),
    ("zygote.py", include_bytes!("../sandbox/python/zygote.py")),
    ("enter.py", include_bytes!("../sandbox/python/enter.py")),
    ("runner.py", include_bytes!("../sandbox/python/runner.py")),
    ("labels.py", include_bytes!("../sandbox/python/labels.py")),
    ("arrow_lite.py", include_bytes!("../sandbox/python/arrow_lite.py")),
];
const CDYLIB_NAME: &str = "libsluice_sandbox.so";
const WARM_ROWS_NAME: &str = "warm-rows.arrow";
const WARM_CHILD_ROWS_NAME: &str = "warm-child-rows.arrow";
const CDYLIB: &[u8] = include_bytes!(env!("SLUICE_SANDBOX_CDYLIB"));

#[derive(Debug, Clone)]
pub struct RuntimeFiles {
    pub harness: PathBuf,
    pub cdylib: PathBuf,
    /// Rows written by the server's own encoder (`sql::warm_up::warm_up_rows`):
    /// every column kind, which the zygote reads at start-up, and the common
    /// kinds, which each pre-forked child reads before its request.
    pub warm_rows: PathBuf,
    pub warm_child_rows: PathBuf,
}

impl RuntimeFiles {
    /// The directory holding all of them (and nothing of the server's).
    pub fn dir(&self) -> PathBuf {
        self.harness.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

pub fn install(runtime_dir: &Path) -> std::io::Result<RuntimeFiles> {
    use crate::sql::warm_up::{WarmUp, warm_up_rows};
    let warm_rows = warm_up_rows(WarmUp::Zygote).map_err(std::io::Error::other)?;
    let warm_child_rows = warm_up_rows(WarmUp::Child).map_err(std::io::Error::other)?;
    let mut h = Sha256::new();
    let generated = [
        (CDYLIB_NAME, CDYLIB),
        (WARM_ROWS_NAME, warm_rows.as_slice()),
        (WARM_CHILD_ROWS_NAME, warm_child_rows.as_slice()),
    ];
    for (name, bytes) in PYTHON.iter().chain(generated.iter()) {
        // Name and length too: moving code between files changes the hash.
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let dir = runtime_dir.join(hex::encode(&h.finalize()[..8]));
    let files = RuntimeFiles {
        harness: dir.join(HARNESS),
        cdylib: dir.join(CDYLIB_NAME),
        warm_rows: dir.join(WARM_ROWS_NAME),
        warm_child_rows: dir.join(WARM_CHILD_ROWS_NAME),
    };
    if PYTHON.iter().all(|(name, _)| dir.join(name).exists())
        && generated.iter().all(|(n, _)| dir.join(n).exists())
    {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in PYTHON.iter().chain(generated.iter()) {
        write_atomic(&dir.join(name), bytes)?;
    }
    Ok(files)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::{HARNESS, PYTHON};

    fn python(name: &str) -> &'static str {
        let bytes: &'static [u8] = PYTHON.iter().find(|(n, _)| *n == name).expect("embedded").1;
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn harness_expects_the_cdylib_abi_this_binary_embeds() {
        let want = format!("ABI_VERSION = {}", sluice_sandbox::ABI_VERSION);
        assert!(python(HARNESS).contains(&want), "harness.py must declare `{want}`");
    }

    /// The child cannot read the runtime directory once landlocked, and the
    /// zygote finds its modules only there: a module the harness imports
    /// but this binary does not write fails every start.
    #[test]
    fn every_module_the_harness_imports_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/python");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("py") {
                continue;
            }
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap().to_string();
            let plain = format!("import {stem}");
            let from = format!("from {stem} import ");
            let imported = PYTHON.iter().any(|(_, bytes)| {
                std::str::from_utf8(bytes).unwrap().lines().any(|line| {
                    let line = line.trim_start();
                    line.split('#').next().unwrap_or("").trim_end() == plain || line.starts_with(&from)
                })
            });
            let name = format!("{stem}.py");
            assert!(
                !imported || PYTHON.iter().any(|(n, _)| *n == name),
                "{name} is imported by the harness but not embedded in src/runtime.rs"
            );
        }
    }
}
