//! Per-request resource limits, applied by the forked child to itself.
//!
//! rlimits are the backstop layer: they hold even where no cgroup can be
//! made. Soft and hard limits are set equal (the child cannot raise them),
//! except CPU, whose soft limit sends SIGXCPU one second before the hard
//! limit's SIGKILL, so the server can tell a CPU timeout from other kills.

use rlimit::Resource;

/// Limits for one child. 0 leaves a limit as inherited (except `core_bytes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub cpu_s: u64,
    pub address_space_bytes: u64,
    pub nproc: u64,
    pub nofile: u64,
    pub fsize_bytes: u64,
    pub core_bytes: u64,
}

/// Apply `l` to the calling process. Returns the errno of the first failure.
pub fn apply(l: &Limits) -> Result<(), i32> {
    if l.cpu_s > 0 {
        set(Resource::CPU, l.cpu_s, l.cpu_s + 1)?;
    }
    if l.address_space_bytes > 0 {
        set(Resource::AS, l.address_space_bytes, l.address_space_bytes)?;
    }
    if l.nproc > 0 {
        set(Resource::NPROC, l.nproc, l.nproc)?;
    }
    if l.nofile > 0 {
        set(Resource::NOFILE, l.nofile, l.nofile)?;
    }
    if l.fsize_bytes > 0 {
        set(Resource::FSIZE, l.fsize_bytes, l.fsize_bytes)?;
    }
    set(Resource::CORE, l.core_bytes, l.core_bytes)
}

fn set(r: Resource, soft: u64, hard: u64) -> Result<(), i32> {
    // Never try to raise a hard limit above what we inherited: an
    // unprivileged process may only lower it.
    let (_, cur_hard) = r.get().map_err(errno)?;
    let hard = hard.min(cur_hard);
    r.set(soft.min(hard), hard).map_err(errno)
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(nix::errno::Errno::EPERM as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    // This test binary holds only this test, so lowering its own limits is
    // harmless; the limits it checks are the ones `apply` just set.
    #[test]
    fn applied_limits_are_in_force_and_cannot_be_raised() {
        let l = Limits { nofile: 64, fsize_bytes: 1 << 20, ..Default::default() };
        apply(&l).expect("apply");
        assert_eq!(Resource::NOFILE.get().unwrap(), (64, 64));
        assert_eq!(Resource::FSIZE.get().unwrap(), (1 << 20, 1 << 20));
        assert_eq!(Resource::CORE.get().unwrap(), (0, 0));
        // The hard limit is clamped to what we have: asking for more keeps 64.
        apply(&Limits { nofile: 4096, ..Default::default() }).expect("apply");
        assert_eq!(Resource::NOFILE.get().unwrap(), (64, 64));
    }
}
