//! Process-level isolation. The zygote sets up, once, before it imports
//! anything: it dies with the server, and it lives in a user namespace, a
//! network namespace (no interfaces but a downed loopback) and a mount
//! namespace of its own. Every forked child inherits them, then `enter`s its
//! own mount namespace (a size-limited tmpfs as its scratch dir) and its own
//! identity.
//!
//! Identity, when the server runs as root: the zygote's user namespace maps
//! a range of otherwise unused uids and gids (the same numbers inside and
//! out) and nothing else, so neither root nor any real account exists in
//! it. Each child switches to a uid of that range no other live child has:
//! outside the namespace it is an unprivileged uid of its own, and the
//! kernel's own uid checks keep it from signalling, tracing or limiting the
//! server, the zygote or another child, whatever seccomp allows. As an
//! ordinary user there is only the user's own uid to map; children keep it
//! (the seccomp argument checks and the namespaces are what separate them).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
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

/// Which isolation `isolate` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// User + network + mount namespaces.
    Full = 0,
    /// Network + mount namespaces only (no user namespace on this host,
    /// running as root).
    NetworkOnly = 1,
}

/// A range of host uids (and the same gids) that no account uses.
#[derive(Debug, Clone, Copy)]
pub struct IdRange {
    pub base: u32,
    pub count: u32,
}

/// Enter new user, network and mount namespaces. As root, with `ids`, the
/// user namespace maps exactly `ids` (written by a helper that stays
/// outside, since a process may map only its own uid from inside); as an
/// ordinary user it maps the user's own uid. The caller keeps its
/// capabilities inside the namespace (children need them to mount their
/// scratch dir and switch uid; they drop all of them in `enter`). As root
/// without user namespaces, fall back to network and mount namespaces and
/// say so.
pub fn isolate(ids: Option<IdRange>) -> Result<Isolation, i32> {
    let uid = Uid::current();
    let gid = Gid::current();
    let level = match (uid.is_root(), ids) {
        (true, Some(ids)) => isolate_as_root(ids)?,
        _ => match unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS) {
            Ok(()) => {
                write_proc("/proc/self/setgroups", "deny")?;
                write_proc("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
                write_proc("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
                Isolation::Full
            }
            Err(_) if uid.is_root() => {
                unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(|e| e as i32)?;
                Isolation::NetworkOnly
            }
            Err(e) => return Err(e as i32),
        },
    };
    // Nothing mounted in here may reach the host's mount table.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| e as i32)?;
    Ok(level)
}

fn isolate_as_root(ids: IdRange) -> Result<Isolation, i32> {
    let map = format!("{} {} {}\n", ids.base, ids.base, ids.count);
    let parent = std::process::id();
    let uid_map = CString::new(format!("/proc/{parent}/uid_map")).expect("no NUL");
    let gid_map = CString::new(format!("/proc/{parent}/gid_map")).expect("no NUL");
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e as i32)?;
    // SAFETY: the zygote calls this before it starts any thread (it checks
    // it is single-threaded before forking children too), and the helper
    // uses only async-signal-safe calls on memory prepared before the fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| e as i32)? {
        nix::unistd::ForkResult::Child => {
            drop(wr);
            let mut b = [0u8; 1];
            // SAFETY: `read` writes at most 1 byte into the 1-byte `b`, from
            // `rd`, an fd this process owns; `write_all` makes only
            // async-signal-safe calls, as this forked child of the zygote
            // must; `_exit` never returns, so no destructor or atexit
            // handler of the parent's state runs here.
            unsafe {
                let ok = libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1) == 1
                    && write_all(&gid_map, map.as_bytes())
                    && write_all(&uid_map, map.as_bytes());
                libc::_exit(if ok { 0 } else { 1 })
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(rd);
            let unshared =
                unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS);
            if unshared.is_ok() {
                let _ = nix::unistd::write(&wr, b"x");
            }
            drop(wr);
            let status = nix::sys::wait::waitpid(child, None).map_err(|e| e as i32)?;
            match unshared {
                Ok(()) if status == nix::sys::wait::WaitStatus::Exited(child, 0) => Ok(Isolation::Full),
                Ok(()) => Err(libc::EPERM),
                Err(_) => {
                    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(|e| e as i32)?;
                    Ok(Isolation::NetworkOnly)
                }
            }
        }
    }
}

/// Write `data` to `path` with raw syscalls (safe after fork).
///
/// # Safety
/// Only async-signal-safe calls; `path` is NUL-terminated.
unsafe fn write_all(path: &CString, data: &[u8]) -> bool {
    // SAFETY: `path` is a CString (NUL-terminated, live for the call);
    // `write` reads at most `data.len()` bytes from the live slice `data`;
    // `fd` is closed once, here. open, write and close are async-signal-safe.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        n == data.len() as isize
    }
}

fn write_proc(path: &str, contents: &str) -> Result<(), i32> {
    std::fs::write(path, contents).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Make each of `paths` reachable by children, who own nothing on the host,
/// in this process's mount namespace. A directory on the way that others
/// may not search (`/root` is 0700) is covered by a small tmpfs (owned by
/// `uid`, which no child runs as) that holds the way down to each path,
/// each bound from the original (read-only unless marked writable). Every
/// other entry of the directories on the way is there as an empty
/// placeholder with mode 000, so code that probes them is refused
/// (EACCES, as landlock would) rather than told they do not exist, and
/// their contents are out of reach even without landlock. Returns the
/// directories it covered.
pub fn expose(paths: &[(PathBuf, bool)], uid: u32) -> Result<Vec<PathBuf>, i32> {
    let mut wanted: Vec<(PathBuf, bool)> = Vec::new();
    for (p, writable) in paths {
        if let Ok(p) = p.canonicalize() {
            wanted.push((p, *writable));
        }
    }
    wanted.sort();
    // Group by the topmost ancestor `uid` cannot search.
    let mut groups: Vec<(PathBuf, Vec<(PathBuf, bool)>)> = Vec::new();
    for (p, w) in wanted {
        let Some(blocked) =
            p.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev().find(|a| !searchable(a))
        else {
            continue;
        };
        let blocked = blocked.to_path_buf();
        match groups.iter_mut().find(|(b, _)| *b == blocked) {
            Some((_, list)) => {
                // Already visible through a bound parent.
                if !list.iter().any(|(q, _)| p.starts_with(q)) {
                    list.push((p, w));
                }
            }
            None => groups.push((blocked, vec![(p, w)])),
        }
    }
    for (cover, list) in &groups {
        // What the directories on the way hold, read before they disappear.
        let mut shadows: Vec<(PathBuf, bool)> = Vec::new();
        for (p, _) in list {
            let mut level = cover.clone();
            for part in p.strip_prefix(cover).map_err(|_| libc::EINVAL)?.components() {
                let next = level.join(part);
                for e in
                    std::fs::read_dir(&level).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?.flatten()
                {
                    let path = e.path();
                    if !list.iter().any(|(q, _)| q.starts_with(&path)) && shadows.len() < MAX_PLACEHOLDERS {
                        shadows.push((path, e.file_type().is_ok_and(|t| t.is_dir())));
                    }
                }
                level = next;
            }
        }
        // Hold each directory before it disappears under the tmpfs.
        let held: Vec<(OwnedFd, PathBuf, bool)> = list
            .iter()
            .map(|(p, w)| {
                open(p.as_path(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map(|fd| (fd, p.clone(), *w))
                    .map_err(|e| e as i32)
            })
            .collect::<Result<_, _>>()?;
        mount(
            Some("tmpfs"),
            cover.as_path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(
                format!("size=1m,nr_inodes={},mode=0711,uid={uid},gid={uid}", 2 * MAX_PLACEHOLDERS).as_str(),
            ),
        )
        .map_err(|e| e as i32)?;
        // The tmpfs belongs to `uid`; directories are made with that fsuid on
        // a thread of their own (fsuid is per thread), which also keeps this
        // process's own fsuid untouched.
        let cover = cover.clone();
        std::thread::spawn(move || -> Result<(), i32> {
            nix::unistd::setfsuid(Uid::from_raw(uid));
            nix::unistd::setfsgid(Gid::from_raw(uid));
            for (p, dir) in &shadows {
                let parent = p.parent().ok_or(libc::EINVAL)?;
                make_dirs(&cover, parent)?;
                let made = if *dir {
                    nix::unistd::mkdir(p.as_path(), Mode::empty())
                } else {
                    open(
                        p.as_path(),
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map(drop)
                };
                match made {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e as i32),
                }
            }
            for (fd, p, writable) in &held {
                let target = p.as_path();
                make_dirs(&cover, target)?;
                let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
                mount(
                    Some(source.as_str()),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| e as i32)?;
                if !writable {
                    mount(
                        None::<&str>,
                        target,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
                        None::<&str>,
                    )
                    .map_err(|e| e as i32)?;
                }
            }
            Ok(())
        })
        .join()
        .map_err(|_| libc::EIO)??;
    }
    Ok(groups.into_iter().map(|(c, _)| c).collect())
}

/// May a uid that owns nothing and is in no group search `dir`?
fn searchable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o001 != 0).unwrap_or(false)
}

/// Placeholders per covered directory at most (the cover tmpfs's inodes).
const MAX_PLACEHOLDERS: usize = 2048;

/// `mkdir -p` of `target` below `cover` (the tmpfs): searchable, not
/// listable.
fn make_dirs(cover: &Path, target: &Path) -> Result<(), i32> {
    let rel = target.strip_prefix(cover).map_err(|_| libc::EINVAL)?;
    let mut at = cover.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match nix::unistd::mkdir(at.as_path(), Mode::from_bits_truncate(0o711)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e as i32),
        }
    }
    Ok(())
}

/// The forked child's own mount namespace and identity: a fresh tmpfs of
/// at most `scratch_bytes` (owned by the child, no devices, no setuid, no
/// executables) mounted on `scratch`; then, with `uid`, that uid and gid
/// and no supplementary groups; then no capabilities at all.
pub fn enter(scratch: &Path, scratch_bytes: u64, uid: Option<u32>) -> Result<(), i32> {
    let parent = getppid().as_raw();
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e as i32)?;
    let owner = uid.unwrap_or_else(|| Uid::current().as_raw());
    let group = uid.unwrap_or_else(|| Gid::current().as_raw());
    // One inode per 4 KiB of the budget at most: many empty files cannot
    // exhaust memory either.
    let inodes = (scratch_bytes / 4096).max(64);
    mount(
        Some("tmpfs"),
        scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("size={scratch_bytes},nr_inodes={inodes},mode=0700,uid={owner},gid={group}").as_str()),
    )
    .map_err(|e| e as i32)?;
    if let Some(id) = uid {
        let (u, g) = (Uid::from_raw(id), Gid::from_raw(id));
        nix::unistd::setgroups(&[]).map_err(|e| e as i32)?;
        nix::unistd::setresgid(g, g, g).map_err(|e| e as i32)?;
        nix::unistd::setresuid(u, u, u).map_err(|e| e as i32)?;
        // Changing uid made the process non-dumpable, which hands its /proc
        // entries to root; it is alone with its uid, so keep them its own.
        prctl::set_dumpable(true).map_err(|e| e as i32)?;
        // It also cleared the parent-death signal: set it again.
        die_with_parent(parent)?;
    }
    drop_capabilities()
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
