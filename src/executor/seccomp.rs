//! Seccomp profiles: `policies/seccomp/<name>.json` (seccompiler's JSON
//! format) compiled once at start-up into BPF, written to the runtime dir
//! in the wire format the sandbox crate loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Profiles shipped in the repository, used when no policies dir is given.
const BUILTIN: &[(&str, &str)] = &[("default", include_str!("../../policies/seccomp/default.json"))];

/// The filters of a profile, in the order they are loaded: `allow` last,
/// because it does not allow `seccomp(2)` itself.
const FILTERS: &[&str] = &["denied", "enosys", "allow"];
/// Largest profile we accept (fail fast on a wrong file).
const MAX_PROFILE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile `{name}`: {source}")]
    Read { name: String, source: std::io::Error },
    #[error("seccomp profile `{0}` is larger than 1 MiB")]
    TooLarge(String),
    #[error("seccomp profile `{name}`: {message}")]
    Compile { name: String, message: String },
    #[error("seccomp profiles are written for x86_64; this host is {0}")]
    Arch(&'static str),
    #[error("writing the compiled seccomp profile to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A compiled profile on disk, ready for the zygote.
#[derive(Debug, Clone)]
pub struct CompiledProfile {
    pub name: String,
    pub path: PathBuf,
    /// Syscall names the `denied` filter lists (for tests and `doctor`).
    pub denied: Vec<String>,
}

/// The profile's JSON text: from `dir/seccomp/<name>.json` when a policies
/// dir is configured and has it, else the built-in one.
pub fn source(policies_dir: Option<&Path>, name: &str) -> Result<String, SeccompError> {
    if let Some(dir) = policies_dir {
        let path = dir.join("seccomp").join(format!("{name}.json"));
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| SeccompError::Read { name: name.into(), source })?;
            return Ok(text);
        }
    }
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| t.to_string()).ok_or_else(|| SeccompError::Read {
        name: name.into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such profile"),
    })
}

/// Compile `text` into the wire format.
pub fn compile(name: &str, text: &str) -> Result<(Vec<u8>, Vec<String>), SeccompError> {
    if text.len() > MAX_PROFILE_BYTES {
        return Err(SeccompError::TooLarge(name.into()));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => seccompiler::TargetArch::x86_64,
        other => return Err(SeccompError::Arch(other)),
    };
    let bad = |message: String| SeccompError::Compile { name: name.into(), message };
    // Keys starting with `_` are documentation, not filters.
    let mut doc: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    doc.retain(|k, _| !k.starts_with('_'));
    for f in FILTERS {
        if !doc.contains_key(*f) {
            return Err(bad(format!("missing the `{f}` filter")));
        }
    }
    if let Some(extra) = doc.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(bad(format!("unknown filter `{extra}`; expected {}", FILTERS.join(", "))));
    }
    // A child receives its request on its channel: a profile written
    // before that would trap every request.
    let allows = |call: &str| {
        doc["allow"]["filter"].as_array().is_some_and(|rules| rules.iter().any(|r| r["syscall"] == call))
    };
    if !allows("recvmsg") {
        return Err(bad(
            "the `allow` filter must allow `recvmsg`: each child receives its one request (header, code, \
             the rows' memfd) on the channel it inherited; see policies/seccomp/default.json"
                .into(),
        ));
    }
    let denied = doc["denied"]["filter"]
        .as_array()
        .map(|rules| rules.iter().filter_map(|r| r["syscall"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    let json = serde_json::to_vec(&doc).expect("serializable");
    let map = seccompiler::compile_from_json(json.as_slice(), arch).map_err(|e| bad(e.to_string()))?;
    let programs: Vec<&seccompiler::BpfProgram> = FILTERS.iter().map(|f| &map[*f]).collect();
    Ok((sluice_sandbox::seccomp::encode(&programs), denied))
}

/// Compile profile `name` and write it under `runtime_dir`, named by hash.
pub fn install(
    policies_dir: Option<&Path>,
    name: &str,
    runtime_dir: &Path,
) -> Result<CompiledProfile, SeccompError> {
    let text = source(policies_dir, name)?;
    let (bytes, mut denied) = compile(name, &text)?;
    denied.sort();
    denied.dedup();
    let hash = hex::encode(&Sha256::digest(&bytes)[..8]);
    let path = runtime_dir.join(format!("seccomp-{name}-{hash}.bpf"));
    if !path.exists() {
        let write = |p: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(runtime_dir)?;
            let tmp = p.with_extension(format!("tmp.{}", std::process::id()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, p)
        };
        write(&path).map_err(|source| SeccompError::Write { path: path.clone(), source })?;
    }
    Ok(CompiledProfile { name: name.into(), path, denied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_profile_compiles_and_lists_its_denials() {
        let text = source(None, "default").unwrap();
        let (bytes, denied) = compile("default", &text).unwrap();
        let programs = sluice_sandbox::seccomp::decode(&bytes).unwrap();
        assert_eq!(programs.len(), 3);
        for must in ["execve", "socket", "ptrace", "bpf", "io_uring_setup", "unshare", "mount", "kill"] {
            assert!(denied.iter().any(|d| d == must), "{must} not in the denied filter");
        }
    }

    #[test]
    fn every_rule_carries_a_comment() {
        let doc: serde_json::Value = serde_json::from_str(&source(None, "default").unwrap()).unwrap();
        for f in FILTERS {
            for rule in doc[f]["filter"].as_array().unwrap() {
                assert!(rule["comment"].as_str().is_some_and(|c| !c.is_empty()), "{f}: {rule}");
            }
        }
    }

    #[test]
    fn bad_profiles_name_the_problem() {
        let e = compile("x", "{\"allow\": {}}").unwrap_err().to_string();
        assert!(e.contains("seccomp profile `x`"), "{e}");
        let e = compile("x", "not json").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        let text = source(None, "default")
            .unwrap()
            .replace("\"syscall\": \"getpid\"", "\"syscall\": \"no_such_call\"");
        let e = compile("x", &text).unwrap_err().to_string();
        assert!(e.contains("no_such_call") || e.to_lowercase().contains("syscall"), "{e}");
        let text =
            source(None, "default").unwrap().replace("\"syscall\": \"recvmsg\"", "\"syscall\": \"getppid\"");
        let e = compile("x", &text).unwrap_err().to_string();
        assert!(e.contains("must allow `recvmsg`"), "{e}");
    }
}
