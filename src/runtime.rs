//! The files the zygote runs from: the Python harness and the sandbox
//! cdylib, both embedded in this binary and written once per content hash
//! under `<data dir>/runtime/<hash>/`, so a new build never runs old files
//! and a running server's files are never overwritten.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const HARNESS: &[u8] = include_bytes!("../sandbox/python/harness.py");
const CDYLIB: &[u8] = include_bytes!(env!("SLUICE_SANDBOX_CDYLIB"));

#[derive(Debug, Clone)]
pub struct RuntimeFiles {
    pub harness: PathBuf,
    pub cdylib: PathBuf,
}

impl RuntimeFiles {
    /// The directory holding both (and nothing of the server's).
    pub fn dir(&self) -> PathBuf {
        self.harness.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

pub fn install(runtime_dir: &Path) -> std::io::Result<RuntimeFiles> {
    let mut h = Sha256::new();
    h.update(HARNESS);
    h.update(CDYLIB);
    let dir = runtime_dir.join(hex::encode(&h.finalize()[..8]));
    let files = RuntimeFiles { harness: dir.join("harness.py"), cdylib: dir.join("libsluice_sandbox.so") };
    if files.harness.exists() && files.cdylib.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir)?;
    write_atomic(&files.harness, HARNESS)?;
    write_atomic(&files.cdylib, CDYLIB)?;
    Ok(files)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn harness_expects_the_cdylib_abi_this_binary_embeds() {
        let harness = std::str::from_utf8(super::HARNESS).unwrap();
        let want = format!("ABI_VERSION = {}", sluice_sandbox::ABI_VERSION);
        assert!(harness.contains(&want), "harness.py must declare `{want}`");
    }
}
