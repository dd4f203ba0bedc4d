//! Landlock: the filesystem the child may see. Read (and execute) on the
//! interpreter, the environment and system libraries; read-write only on
//! its scratch directory; nothing else. TCP bind/connect are handled with
//! no rule (denied), and signals and abstract Unix sockets are scoped to
//! the child's own domain, so it cannot signal the zygote, the server or
//! another request's child.
//!
//! The rules come from the harness as text, one per line:
//! `r:/path` (read, execute), `rw:/path` (read, write, create, remove).

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The ABI we ask for; the crate degrades to what the kernel offers, and
/// `apply` reports how much was enforced.
const TARGET: ABI = ABI::V6;

/// How much of the ruleset the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    Fully = 0,
    Partially = 1,
}

/// The running kernel's Landlock ABI version (0: none).
pub fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag,
    // landlock_create_ruleset only returns the ABI version (or an error);
    // no memory is read or written.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 { 0 } else { v as i32 }
}

fn rw_access(abi: ABI) -> BitFlags<AccessFs> {
    // Everything but executing files and making device nodes.
    AccessFs::from_all(abi) & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock)
}

/// The lines of a spec: each path and whether it is writable (`rw:`).
pub fn parse(spec: &str) -> Result<Vec<(&str, bool)>, i32> {
    spec.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| match line.split_once(':').ok_or(libc::EINVAL)? {
            ("r", path) => Ok((path, false)),
            ("rw", path) => Ok((path, true)),
            _ => Err(libc::EINVAL),
        })
        .collect()
}

/// Restrict the calling process (and its future threads) to `spec`.
pub fn apply(spec: &str) -> Result<Enforced, i32> {
    let abi = TARGET;
    let mut created = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp))
        .and_then(|r| r.scope(Scope::Signal | Scope::AbstractUnixSocket))
        .and_then(|r| r.create())
        .map_err(|_| libc::EINVAL)?;
    for (path, writable) in parse(spec)? {
        let wanted = if writable { rw_access(abi) } else { AccessFs::from_read(abi) };
        // A path that does not exist on this host is simply not granted.
        let Ok(fd) = PathFd::new(path) else { continue };
        let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
        let access = if is_dir { wanted } else { wanted & AccessFs::from_file(abi) };
        created = created.add_rule(PathBeneath::new(fd, access)).map_err(|_| libc::EINVAL)?;
    }
    let status = created.restrict_self().map_err(|_| libc::EPERM)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(Enforced::Fully),
        RulesetStatus::PartiallyEnforced => Ok(Enforced::Partially),
        RulesetStatus::NotEnforced => Err(libc::ENOSYS),
    }
}
