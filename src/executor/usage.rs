//! Ending a child whose result is in, without the zygote: each child hands
//! the server its own pidfd when it starts (on its request channel, before
//! seccomp). The server reads the child's CPU time and peak memory from
//! /proc, then SIGKILLs it through the pidfd. A pidfd names one process for
//! good, and a pid is only reused once its process has been reaped, which
//! the pidfd could then no longer signal: a kill that succeeds proves the
//! figures read just before were this child's (a zombie can be signalled
//! too, so one found exited is left to the zygote's `exited` report). The
//! zygote (single-threaded, and busy forking the next spares) still reaps
//! it, off the request path.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use tokio::io::Interest;

/// The child's pidfd, the first thing it sends on its channel.
pub(super) async fn recv_pidfd(channel: &tokio::net::UnixStream) -> std::io::Result<OwnedFd> {
    channel
        .async_io(Interest::READABLE, || {
            let mut byte = [0u8; 1];
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got =
                recvmsg(channel, &mut [IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
            let mut fds: Vec<OwnedFd> = Vec::new();
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = msg {
                    fds.extend(rights);
                }
            }
            match (got.bytes, fds.len()) {
                (1, 1) => Ok(fds.pop().expect("one fd")),
                (0, _) => Err(std::io::Error::other("the child closed its channel before it sent its pidfd")),
                (_, n) => Err(std::io::Error::other(format!("the child sent {n} fds, not its pidfd"))),
            }
        })
        .await
}

/// The fields of `/proc/<pid>/stat` after the command name (which may
/// hold spaces): state first; empty once the process is gone.
pub fn stat_fields(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().map(String::from).collect()).unwrap_or_default()
}

/// CPU time (ns) of a child, from the kernel: the sum of its threads' run
/// time (`/proc/<pid>/task/*/schedstat`, ns-precise), or the process's
/// utime+stime (which also counts threads that ended, in clock ticks) when
/// that is more.
pub(super) fn cpu_ns(pid: i32) -> u64 {
    cpu_ns_with(pid, &stat_fields(pid))
}

fn cpu_ns_with(pid: i32, stat: &[String]) -> u64 {
    let mut threads = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            threads += stat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    let tick = |i: usize| stat.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let hz =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    // Fields 14 and 15 (utime, stime), counted after the command name.
    threads.max((tick(11) + tick(12)) * 1_000_000_000 / hz)
}

/// CPU time (ns) and peak resident memory (KiB) of a child that still runs;
/// `None` once it has exited (a zombie, not yet reaped, or gone): its
/// `exited` report then says how it ended, not a kill.
pub(super) fn live_account(pid: i32) -> Option<(u64, u64)> {
    let stat = stat_fields(pid);
    if matches!(stat.first().map(String::as_str), None | Some("Z" | "X")) {
        return None;
    }
    Some((cpu_ns_with(pid, &stat), status_kb(pid, "VmHWM").unwrap_or(0)))
}

/// CLOCK_MONOTONIC now, in seconds (Python's `time.monotonic` in the
/// zygote reads the same clock).
pub(super) fn monotonic_s() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

/// One `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`).
pub(super) fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// SIGKILL through the pidfd. An error (ESRCH) means the process had
/// already ended: its `exited` report says how.
pub(super) fn kill(pidfd: &OwnedFd) -> std::io::Result<()> {
    rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        // Spin a little so there is CPU time to see.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(20) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(super::cpu_ns(me) >= 10_000_000, "{}", super::cpu_ns(me));
        assert!(super::status_kb(me, "VmHWM").unwrap() > 0);
        assert!(super::status_kb(me, "VmRSS").unwrap() > 0);
        assert_eq!(super::status_kb(me, "VmNope"), None);
        assert!(super::live_account(me).is_some_and(|(cpu, peak)| cpu >= 10_000_000 && peak > 0));
        assert_eq!(super::cpu_ns(i32::MAX), 0);
        assert_eq!(super::live_account(i32::MAX), None);
    }
}
