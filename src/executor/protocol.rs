//! The host ⇄ zygote protocol, typed and versioned. The server sends one
//! JSON datagram per message (`Spawn`, `Arm`, `Kill`; an empty datagram
//! asks the zygote to stop); the zygote answers with `Wire` events. A
//! request itself never passes through the zygote: the server writes it
//! (`Request` header, code, the rows' memfd) to the child's own channel. The zygote's
//! `ready` names the protocol version it speaks, and the server refuses a
//! zygote that speaks another (sandbox/python/harness.py
//! `PROTOCOL_VERSION`; a unit test in runtime.rs keeps them equal).

use std::path::Path;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The version of this protocol.
pub const VERSION: u32 = 5;

/// Largest datagram either side sends.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Limits the child applies to itself (rlimits, its scratch tmpfs) or the
/// harness enforces (captured output, result size). Each has the name it
/// has in the policy file, on every step from there to the child.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChildLimits {
    pub timeout_s: f64,
    pub cpu_s: u64,
    pub memory_mb: u64,
    pub max_threads: u64,
    pub max_open_files: u64,
    pub max_file_size_mb: u64,
    pub max_scratch_mb: u64,
    pub max_stdout_bytes: u64,
    pub max_stderr_bytes: u64,
    pub max_output_bytes: u64,
}

impl ChildLimits {
    /// The policy's limits, with the three a request may choose.
    pub fn new(l: &crate::policy::Limits, timeout_s: f64, cpu_s: u64, memory_mb: u64) -> Self {
        ChildLimits {
            timeout_s,
            cpu_s,
            memory_mb,
            max_threads: l.max_threads,
            max_open_files: l.max_open_files,
            max_file_size_mb: l.max_file_size_mb,
            max_scratch_mb: l.max_scratch_mb,
            max_stdout_bytes: l.max_stdout_bytes,
            max_stderr_bytes: l.max_stderr_bytes,
            max_output_bytes: l.max_output_bytes,
        }
    }
}

/// What each child applies besides its limits.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxSpec {
    pub landlock: bool,
    pub seccomp: bool,
}

/// Fork child `id`, which enters the sandbox and waits for its request
/// (sent with the child's two fds: its request channel, a Unix stream
/// socket, and its result pipe). `limits` are the policy's ceilings: the
/// request's, never higher, replace them on arrival.
#[derive(Debug, Serialize)]
pub struct Spawn<'a> {
    pub op: &'static str,
    pub id: Uuid,
    #[serde(flatten)]
    pub limits: &'a ChildLimits,
    /// The mount point of its scratch tmpfs.
    pub scratch: &'a Path,
    /// The compiled seccomp program, if the policy has one.
    pub seccomp: Option<&'a Path>,
    pub sandbox: SandboxSpec,
    /// Its own host uid (as root).
    pub uid: Option<u32>,
}

impl Spawn<'_> {
    pub fn encode(&self) -> Encoded {
        Encoded(serde_json::to_vec(self).expect("serializable"))
    }
}

/// A `Spawn` as the zygote reads it.
pub struct Encoded(pub Vec<u8>);

/// Child `id` has its request: its wall clock runs from `start` (the
/// server's CLOCK_MONOTONIC, which Python's `time.monotonic` reads, in
/// seconds) for `timeout_s`, and the CPU it had used by then (`cpu0_ns`)
/// is not the request's. Absolute, so a zygote busy forking when it reads
/// this does not start the clock late.
#[derive(Debug, Serialize)]
pub struct Arm {
    pub op: &'static str,
    pub id: Uuid,
    pub start: f64,
    pub timeout_s: f64,
    pub cpu0_ns: u64,
}

/// The header of a request on a child's channel (after a 4-byte
/// big-endian length; the code follows up to EOF, the rows' memfd rides
/// along as `SCM_RIGHTS`): the request's own limits and entrypoint.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    pub limits: &'a ChildLimits,
    pub entrypoint: &'a str,
}

impl Request<'_> {
    /// Length-prefixed, as `enter.receive` reads it.
    pub fn frame(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("serializable");
        let mut out = (json.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&json);
        out
    }
}

/// SIGKILL request `id`'s child (the zygote reaps it: no pid reuse).
#[derive(Debug, Serialize)]
pub struct Kill {
    pub op: &'static str,
    pub id: Uuid,
}

impl Kill {
    pub fn new(id: Uuid) -> Self {
        Kill { op: "kill", id }
    }
}

/// What the zygote reports once its imports are done.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ReadyInfo {
    /// The protocol version the zygote speaks (`VERSION`).
    pub protocol: u32,
    pub pid: i32,
    pub python: String,
    pub versions: serde_json::Value,
    /// How rows become a DataFrame: `pyarrow`, or `arrow_lite` (the
    /// harness's own reader) in an environment without pyarrow.
    pub rows_reader: String,
    pub import_ms: f64,
    pub vm_kb: u64,
    pub rss_kb: u64,
    pub threads: u32,
    pub isolation: Isolation,
}

/// What the zygote achieved and found when it isolated itself.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Isolation {
    pub user_namespace: bool,
    pub network_namespace: bool,
    pub error: Option<String>,
    /// Each child has a mount namespace of its own (its scratch tmpfs).
    #[serde(default)]
    pub mount_namespace: bool,
    /// The zygote's uid inside its user namespace.
    pub uid: u32,
    /// As root: the host uids children run as, one per live child.
    #[serde(default)]
    pub child_uids: Option<[u32; 2]>,
    /// Directories only root could search that were covered for them.
    #[serde(default)]
    pub covered: u32,
    /// The Landlock ABI the children use (the kernel's, capped).
    pub landlock_abi: i32,
    /// The kernel's own.
    #[serde(default)]
    pub landlock_kernel_abi: i32,
    pub seccomp: bool,
}

/// How a child ended (or was ended), as the zygote saw it. CPU counts
/// from the moment its request was handed over.
#[derive(Debug, Clone, Deserialize)]
pub struct Exit {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu_ms: u64,
    pub maxrss_kb: u64,
    pub wall_ms: f64,
    /// "wall_clock" when the zygote killed it at the deadline.
    pub killed: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Wire {
    Ready(ReadyInfo),
    Failed {
        message: String,
    },
    Started {
        id: Uuid,
        pid: i32,
    },
    Exited {
        id: Uuid,
        #[serde(flatten)]
        exit: Exit,
    },
    Error {
        id: Option<Uuid>,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_harness_speaks_this_protocol() {
        let harness = include_str!("../../sandbox/python/harness.py");
        let want = format!("PROTOCOL_VERSION = {}", super::VERSION);
        assert!(harness.contains(&want), "harness.py must declare `{want}`");
    }
}
