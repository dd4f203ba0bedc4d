//! How a child ended → exactly one status. The child's own result frame
//! decides when it finished normally; otherwise the signal and the limits
//! do (like nsjail's reapProc).

use super::frame::error_value;
pub use super::frame::{Detail, Scalar};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ChildLimits;
use super::protocol::Exit;
use crate::status::Status;

/// Everything the response and the audit need about one child.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// `{"message", ...detail}` on error (the category is added later).
    pub error: Option<Value>,
    pub predictions: Option<Vec<Value>>,
    pub scores: Option<Vec<Option<f64>>>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub cpu_ms: u64,
    pub peak_memory_kb: u64,
    pub exit_signal: Option<i32>,
    pub wall_ms: f64,
}

/// The frame the harness writes (sandbox/python/harness.py `run_child`).
/// The child's code can write this frame itself, so nothing in it is
/// trusted beyond its shape: labels and error details are JSON scalars
/// (a nested value fails the parse at once instead of growing the server),
/// and every text is clipped here to the policy's limits.
#[derive(Deserialize)]
pub struct ChildResult {
    status: String,
    #[serde(default)]
    error: Option<std::collections::BTreeMap<String, Detail>>,
    #[serde(default)]
    predictions: Option<Vec<Scalar>>,
    #[serde(default)]
    scores: Option<Vec<Option<f64>>>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    stdout_truncated: bool,
    #[serde(default)]
    stderr_truncated: bool,
    /// Per-step times inside the child (ms), for the debug log.
    #[serde(default)]
    pub timings: Option<std::collections::BTreeMap<String, Scalar>>,
}

/// What came out of the result pipe.
pub enum Frame {
    /// More than the cap: the output limit decides.
    TooBig,
    /// Nothing, or not a complete frame: the process ending decides.
    Missing,
    Complete(Box<ChildResult>),
}

impl Frame {
    pub fn parse(bytes: Option<Vec<u8>>) -> Frame {
        match bytes {
            None => Frame::TooBig,
            Some(b) if b.is_empty() => Frame::Missing,
            Some(b) => match serde_json::from_slice::<ChildResult>(&b) {
                Ok(r) => Frame::Complete(Box::new(r)),
                Err(_) => Frame::Missing,
            },
        }
    }
}

pub fn classify(
    limits: &ChildLimits,
    row_count: usize,
    exit: Exit,
    frame: Frame,
    oom_killed: Option<bool>,
) -> Outcome {
    let mut o = Outcome {
        status: Status::InternalError,
        error: None,
        predictions: None,
        scores: None,
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        cpu_ms: exit.cpu_ms,
        peak_memory_kb: exit.maxrss_kb,
        exit_signal: exit.signal,
        wall_ms: exit.wall_ms,
    };

    // A result that is too big never parses: the limit decides.
    let parsed = match frame {
        Frame::TooBig => {
            o.status = Status::OutputLimit;
            o.error = Some(json!({
                "message": format!("the child wrote more than the result limit of {} bytes", limits.max_output_bytes),
                "limit_bytes": limits.max_output_bytes,
            }));
            return o;
        }
        Frame::Missing => None,
        Frame::Complete(r) => Some(*r),
    };

    // Killed by us at the wall-clock limit, whatever it wrote.
    if exit.killed.as_deref() == Some("wall_clock") {
        keep_output(&mut o, parsed.as_ref(), limits);
        o.status = Status::Timeout;
        o.error = Some(json!({
            "message": format!(
                "the code ran longer than the {} s wall-clock limit and was killed; make it faster, \
                 use fewer rows, or ask for a larger `timeout`", limits.timeout_s),
            "limit_s": limits.timeout_s,
            "kind": "wall_clock",
        }));
        return o;
    }
    // SIGXCPU at the soft CPU limit, or SIGKILL at the hard one once the
    // CPU time is there.
    // (A SIGKILL the server sent once the result was in is not a limit.)
    let cpu_limit_ms = limits.cpu_s * 1000;
    let ended_by_us = exit.killed.as_deref() == Some("request_ended") && parsed.is_some();
    if !ended_by_us
        && (exit.signal == Some(libc_sig::SIGXCPU)
            || (exit.signal == Some(libc_sig::SIGKILL) && exit.cpu_ms >= cpu_limit_ms))
    {
        o.status = Status::Timeout;
        o.error = Some(json!({
            "message": format!("the code used more than its {} s of CPU time and was killed", limits.cpu_s),
            "limit_s": limits.cpu_s,
            "kind": "cpu",
        }));
        return o;
    }

    match (parsed, exit.signal) {
        (Some(r), _) => {
            keep_output(&mut o, Some(&r), limits);
            match Status::from_child(&r.status) {
                Some(Status::Success) => match check_success(&r, row_count) {
                    Ok(()) => {
                        o.status = Status::Success;
                        o.predictions = r.predictions.map(|p| p.into_iter().map(|Scalar(v)| v).collect());
                        o.scores = r.scores;
                    }
                    Err(reason) => {
                        o.status = Status::InternalError;
                        o.error = Some(
                            json!({ "message": format!("the harness broke the result contract: {reason}") }),
                        );
                    }
                },
                Some(Status::MemoryLimit) => {
                    o.status = Status::MemoryLimit;
                    o.error = Some(memory_error(limits, r.error.map(error_value)));
                }
                Some(s) => {
                    o.status = s;
                    o.error = r.error.map(error_value).or_else(|| Some(json!({ "message": "no detail" })));
                }
                None => {
                    o.status = Status::InternalError;
                    o.error =
                        Some(json!({ "message": format!("unknown status `{}` from the harness", r.status) }));
                }
            }
        }
        // No result: the kernel (or the allocator) ended the child.
        // The cgroup proves the kernel's OOM killer ended it; without a
        // cgroup, nothing but the OOM killer sends SIGKILL to a child we
        // did not kill ourselves.
        (None, Some(libc_sig::SIGKILL)) if oom_killed != Some(false) => {
            o.status = Status::MemoryLimit;
            let how = if oom_killed == Some(true) {
                "the kernel's out-of-memory killer ended the process at its cgroup memory limit; "
            } else {
                "the process was killed by SIGKILL, most likely by the kernel for using too much memory; "
            };
            o.error = Some(memory_error(limits, Some(json!({ "message": how.trim_end_matches("; ") }))));
        }
        // SIGSYS without a report: the call was made with signals blocked
        // (glibc's posix_spawn, behind os.system and subprocess, blocks
        // them around clone), so the kernel killed the process instead of
        // running the reporter; or the filter's architecture check killed
        // a 32-bit `int 0x80` call.
        (None, Some(libc_sig::SIGSYS)) => {
            o.status = Status::SecurityViolation;
            o.error = Some(json!({
                "message": "the sandbox killed the process for a forbidden system call, most likely an attempt \
                    to start a process (os.system, subprocess, posix_spawn) or a 32-bit system call; \
                    starting programs is not allowed, do the work in Python",
                "syscall": null,
            }));
        }
        (None, Some(sig)) => {
            let name = signal_name(sig);
            o.status = Status::RuntimeError;
            o.error = Some(json!({
                "message": format!("the code crashed the Python process with signal {sig} ({name}); \
                    this usually means a native library crashed or aborted"),
                "type": name,
                "line": null,
                "traceback": null,
                "signal": sig,
            }));
        }
        // The harness always writes a frame before it exits: a process
        // that ended without one was ended by the code (`os._exit`, a
        // native library calling `exit()`).
        (None, None) => {
            let code = exit.exit_code.unwrap_or(0);
            o.status = Status::RuntimeError;
            // 71: the harness could not write the result (the code closed
            // or filled the result pipe, or the harness itself failed).
            let how = if code == 71 {
                "(or broke the result pipe so the result could not be written)"
            } else {
                "(os._exit or a native library calling exit())"
            };
            o.error = Some(json!({
                "message": format!("the code ended the Python process with exit code {code} {how} before the \
                    labels were returned; return the labels from the function instead of exiting"),
                "type": "ProcessExit",
                "line": null,
                "traceback": null,
                "exit_code": code,
            }));
        }
    }
    o
}

/// `s` cut to at most `limit` bytes on a character boundary, and whether it
/// was cut.
pub(super) fn clip(mut s: String, limit: u64) -> (String, bool) {
    let end = s.floor_char_boundary(limit as usize);
    let cut = end < s.len();
    s.truncate(end);
    (s, cut)
}

fn keep_output(o: &mut Outcome, r: Option<&ChildResult>, limits: &ChildLimits) {
    if let Some(r) = r {
        let (stdout, cut_out) = clip(r.stdout.clone(), limits.max_stdout_bytes);
        let (stderr, cut_err) = clip(r.stderr.clone(), limits.max_stderr_bytes);
        o.stdout = stdout;
        o.stderr = stderr;
        o.stdout_truncated = r.stdout_truncated || cut_out;
        o.stderr_truncated = r.stderr_truncated || cut_err;
    }
}

fn memory_error(limits: &ChildLimits, from_child: Option<Value>) -> Value {
    let what = from_child
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| format!("{m}; "))
        .unwrap_or_else(|| "the process was killed for using too much memory; ".into());
    json!({
        "message": format!("{what}the limit is {} MB: use fewer rows or columns, smaller dtypes, \
            or ask for a larger `max_memory`", limits.memory_mb),
        "limit_mb": limits.memory_mb,
    })
}

fn check_success(r: &ChildResult, row_count: usize) -> Result<(), String> {
    let p = r.predictions.as_ref().ok_or("no predictions")?;
    if p.len() != row_count {
        return Err(format!("{} predictions for {row_count} rows", p.len()));
    }
    if let Some(s) = &r.scores
        && s.len() != row_count
    {
        return Err(format!("{} scores for {row_count} rows", s.len()));
    }
    Ok(())
}

/// Signal numbers we classify (Linux, x86-64 and arm64 agree on these).
mod libc_sig {
    pub const SIGKILL: i32 = 9;
    pub const SIGSYS: i32 = 31;
    pub const SIGXCPU: i32 = 24;
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ChildLimits {
        ChildLimits {
            timeout_s: 2.0,
            cpu_s: 4,
            memory_mb: 100,
            max_threads: 64,
            max_open_files: 64,
            max_file_size_mb: 1,
            max_scratch_mb: 1,
            max_stdout_bytes: 100,
            max_stderr_bytes: 100,
            max_output_bytes: 1000,
        }
    }

    fn exit(signal: Option<i32>, cpu_ms: u64, killed: Option<&str>) -> Exit {
        Exit {
            exit_code: if signal.is_some() { None } else { Some(0) },
            signal,
            cpu_ms,
            maxrss_kb: 1,
            wall_ms: 1.0,
            killed: killed.map(String::from),
        }
    }

    fn frame(bytes: &[u8]) -> Frame {
        Frame::parse(Some(bytes.to_vec()))
    }

    #[test]
    fn endings_map_to_one_status_each() {
        let l = limits();
        let ok: &[u8] = br#"{"status":"success","predictions":["a","b"],"scores":null}"#;
        let status = |rows, e, f| classify(&l, rows, e, f, None).status;
        assert_eq!(status(2, exit(None, 1, None), frame(ok)), Status::Success);
        assert_eq!(status(3, exit(None, 1, None), frame(ok)), Status::InternalError);
        assert_eq!(status(2, exit(Some(9), 1, Some("wall_clock")), frame(b"")), Status::Timeout);
        assert_eq!(status(2, exit(Some(24), 4000, None), frame(b"")), Status::Timeout);
        assert_eq!(status(2, exit(Some(9), 10, None), frame(b"")), Status::MemoryLimit);
        let seg = classify(&l, 2, exit(Some(11), 10, None), frame(b"{\"status\":"), None);
        assert_eq!(seg.status, Status::RuntimeError);
        assert!(seg.error.unwrap()["message"].as_str().unwrap().contains("SIGSEGV"));
        let exited = classify(&l, 2, exit(None, 1, None), frame(b""), None);
        assert_eq!(exited.status, Status::RuntimeError);
        assert_eq!(exited.error.unwrap()["exit_code"], 0);
        assert_eq!(status(2, exit(None, 1, None), Frame::parse(None)), Status::OutputLimit);
        assert_eq!(status(2, exit(Some(31), 1, None), frame(b"")), Status::SecurityViolation);
        // With a cgroup that saw no OOM kill, SIGKILL is not blamed on memory.
        assert_eq!(
            classify(&l, 2, exit(Some(9), 10, None), frame(b""), Some(false)).status,
            Status::RuntimeError
        );
        assert_eq!(
            classify(&l, 2, exit(Some(9), 10, None), frame(b""), Some(true)).status,
            Status::MemoryLimit
        );
        let forged: &[u8] = br#"{"status":"sql_error"}"#;
        assert_eq!(status(2, exit(None, 1, None), frame(forged)), Status::InternalError);
    }

    #[test]
    fn a_child_killed_after_its_result_is_judged_by_the_result() {
        let l = limits();
        let ok: &[u8] = br#"{"status":"success","predictions":[1]}"#;
        // The server killed it once the frame was in, even after much CPU.
        let o = classify(&l, 1, exit(Some(9), 999_999, Some("request_ended")), frame(ok), None);
        assert_eq!(o.status, Status::Success);
        assert_eq!(o.cpu_ms, 999_999, "CPU comes from the kernel's report");
    }
}
