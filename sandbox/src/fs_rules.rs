//! Landlock: the filesystem the child may see. Read (and execute) on the
//! interpreter, the environment and system libraries; read-write only on
//! its scratch directory; nothing else. TCP bind/connect are handled with
//! no rule (denied), and signals and abstract Unix sockets are scoped to
//! the child's own domain, so it cannot signal the zygote, the server or
//! another request's child.
//!
//! Each of these arrived with a Landlock ABI: filesystem rules with 1,
//! refer with 2, truncate with 3, TCP with 4, device ioctl with 5, scoping
//! with 6. The ruleset asks for exactly what the ABI in use has (the
//! kernel's, or lower when `SLUICE_LANDLOCK_ABI_MAX` caps it), so an older
//! kernel gets every feature it has, and the layer report says which.
//!
//! The rules come from the harness as text, one per line: `abi:N` (the ABI
//! to use), `r:/path` (read, execute), `rw:/path` (read, write, create,
//! remove).

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The newest ABI whose features sluice uses (scoping arrived in 6).
const NEWEST_USED: i32 = 6;

/// How much of the ruleset the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    Fully = 0,
    Partially = 1,
}

/// The ABI sluice uses: the kernel's, capped by `SLUICE_LANDLOCK_ABI_MAX`
/// (to run the older-kernel path on a newer kernel), and by the newest
/// whose features sluice uses.
pub fn abi_in_use() -> i32 {
    let cap = std::env::var("SLUICE_LANDLOCK_ABI_MAX").ok().and_then(|v| v.trim().parse::<i32>().ok());
    kernel_abi().min(cap.unwrap_or(i32::MAX)).clamp(0, NEWEST_USED)
}

/// The ABI as the landlock crate names it.
fn abi(n: i32) -> ABI {
    match n {
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        n if n >= 6 => ABI::V6,
        _ => ABI::Unsupported,
    }
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
        .filter(|l| !l.trim().is_empty() && !l.starts_with("abi:"))
        .map(|line| match line.split_once(':').ok_or(libc::EINVAL)? {
            ("r", path) => Ok((path, false)),
            ("rw", path) => Ok((path, true)),
            _ => Err(libc::EINVAL),
        })
        .collect()
}

/// Restrict the calling process (and its future threads) to `spec`.
pub fn apply(spec: &str) -> Result<Enforced, i32> {
    let n = spec
        .lines()
        .find_map(|l| l.strip_prefix("abi:"))
        .map(|v| v.trim().parse::<i32>().map_err(|_| libc::EINVAL))
        .transpose()?
        .unwrap_or_else(abi_in_use);
    if n < 1 {
        return Err(libc::ENOSYS);
    }
    let abi = abi(n);
    let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(abi)).map_err(|_| libc::EINVAL)?;
    if n >= 4 {
        ruleset =
            ruleset.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp).map_err(|_| libc::EINVAL)?;
    }
    if n >= 6 {
        ruleset = ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket).map_err(|_| libc::EINVAL)?;
    }
    let mut created = ruleset.create().map_err(|_| libc::EINVAL)?;
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
