//! Process-level isolation the zygote sets up once, before it imports
//! anything: it dies with the server, and it lives in a user namespace
//! (where it is an unprivileged uid with no capabilities) and a network
//! namespace of its own (no interfaces but a downed loopback). Every
//! forked child inherits all of it.

use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, getppid};

/// The uid and gid the sandbox runs as inside its user namespace when the
/// server is root (`nobody`). An ordinary user keeps its own ids.
pub const ROOT_INSIDE_ID: u32 = 65534;

/// SIGKILL this process when its parent dies; fail with ESRCH if the parent
/// already changed (we were reparented before the call took effect).
pub fn die_with_parent(expected_parent: i32) -> Result<(), i32> {
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| e as i32)?;
    if expected_parent > 0 && getppid().as_raw() != expected_parent {
        return Err(nix::errno::Errno::ESRCH as i32);
    }
    Ok(())
}

/// Which isolation `isolate` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// User + network namespace, capabilities dropped.
    Full = 0,
    /// Network namespace only (no user namespace on this host, running as root).
    NetworkOnly = 1,
}

/// Enter a new user and network namespace, map our ids, drop every
/// capability. As root without user namespaces, fall back to a plain
/// network namespace and say so.
pub fn isolate() -> Result<Isolation, i32> {
    let uid = Uid::current();
    let gid = Gid::current();
    match unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET) {
        Ok(()) => {}
        Err(_) if uid.is_root() => {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e as i32)?;
            return Ok(Isolation::NetworkOnly);
        }
        Err(e) => return Err(e as i32),
    }
    let (inside_uid, inside_gid) =
        if uid.is_root() { (ROOT_INSIDE_ID, ROOT_INSIDE_ID) } else { (uid.as_raw(), gid.as_raw()) };
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{inside_uid} {uid} 1\n"))?;
    write_proc("/proc/self/gid_map", &format!("{inside_gid} {gid} 1\n"))?;
    drop_capabilities()?;
    Ok(Isolation::Full)
}

fn write_proc(path: &str, contents: &str) -> Result<(), i32> {
    std::fs::write(path, contents).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Clear the bounding, ambient, permitted, effective and inheritable sets.
pub fn drop_capabilities() -> Result<(), i32> {
    for cap in 0..=63 {
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number; an
        // unknown number fails with EINVAL, which ends the loop's purpose.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            break;
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset reads a version-3 header and two data structs, which
    // live on our stack for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM));
    }
    Ok(())
}
