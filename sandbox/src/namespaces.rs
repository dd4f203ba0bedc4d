//! Process-level isolation the zygote sets up once, before it imports
//! anything: it dies with the server, and it lives in a network namespace
//! of its own (no interfaces but a downed loopback), which every forked
//! child inherits.

use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, getppid};

/// SIGKILL this process when its parent dies; fail with ESRCH if the parent
/// already changed (we were reparented before the call took effect).
pub fn die_with_parent(expected_parent: i32) -> Result<(), i32> {
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| e as i32)?;
    if expected_parent > 0 && getppid().as_raw() != expected_parent {
        return Err(nix::errno::Errno::ESRCH as i32);
    }
    Ok(())
}

/// Enter a new network namespace. As root this is a plain unshare; as an
/// ordinary user it needs a user namespace first, in which we map our own
/// uid and gid to themselves so the process keeps its identity.
pub fn isolate_network() -> Result<(), i32> {
    let uid = Uid::current();
    let gid = Gid::current();
    if uid.is_root() {
        return unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e as i32);
    }
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|e| e as i32)?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_proc("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))
}

fn write_proc(path: &str, contents: &str) -> Result<(), i32> {
    std::fs::write(path, contents).map_err(|e| e.raw_os_error().unwrap_or(1))
}
