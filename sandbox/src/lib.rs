//! The code that runs inside sluice's jail.
//!
//! This crate is built twice: as an rlib (the server links it for the
//! seccomp wire format and shared constants) and as a cdylib that the
//! Python zygote loads with `ctypes`. The zygote and its forked children
//! call the `extern "C"` functions below; each returns 0 (or a small
//! non-negative status) on success or a negated errno, so the harness can
//! name the step that failed.
//!
//! The child's entry is a straight list of steps, each failing loudly:
//! die-with-parent → fds → mount namespace, scratch tmpfs, uid, no
//! capabilities → rlimits → landlock → SIGSYS reporter → seccomp (with
//! no_new_privs) → user code. (The server moves the child into its cgroup
//! before it sends the request.)

#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(unsafe_op_in_unsafe_fn)]

pub mod fs_rules;
pub mod limits;
pub mod namespaces;
pub mod seccomp;
pub mod sigsys;
pub mod syscalls;

/// Bumped whenever the C ABI below changes; the harness refuses a mismatch.
pub const ABI_VERSION: i32 = 3;

/// Version of the C ABI, checked by the harness at load time.
#[unsafe(no_mangle)]
pub extern "C" fn sluice_abi_version() -> i32 {
    ABI_VERSION
}

/// Ask the kernel to SIGKILL this process when its parent dies, then check
/// the parent is still the one we expect (it may have died before the call).
#[unsafe(no_mangle)]
pub extern "C" fn sluice_die_with_parent(expected_parent: i32) -> i32 {
    errno_result(namespaces::die_with_parent(expected_parent))
}

/// Move the calling (single-threaded) zygote into new user, network and
/// mount namespaces. As root, the user namespace maps the `id_count` uids
/// and gids from `id_base` (0 for none: map the caller's own uid). Returns
/// 0 (full isolation), 1 (network and mount namespaces only), or a negated
/// errno.
#[unsafe(no_mangle)]
pub extern "C" fn sluice_isolate(id_base: u32, id_count: u32) -> i32 {
    let ids = (id_count > 0).then_some(namespaces::IdRange { base: id_base, count: id_count });
    match namespaces::isolate(ids) {
        Ok(i) => i as i32,
        Err(e) => -e.abs(),
    }
}

/// Make the directories in `spec` (lines `r:PATH` or `rw:PATH`) reachable
/// by `uid` in the zygote's mount namespace (see `namespaces::expose`).
/// Returns how many directories were covered, or a negated errno.
///
/// # Safety
/// `spec` must be non-null and point to `len` readable bytes (even when
/// `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sluice_expose(spec: *const u8, len: usize, uid: u32) -> i32 {
    // SAFETY: per the contract above, `spec` is non-null and points to `len`
    // readable bytes that live for the call (the harness passes a Python
    // bytes object); `u8` needs no alignment.
    let bytes = unsafe { std::slice::from_raw_parts(spec, len) };
    let Ok(text) = std::str::from_utf8(bytes) else { return -libc::EINVAL };
    let paths: Vec<_> = match fs_rules::parse(text) {
        Ok(lines) => lines.into_iter().map(|(p, w)| (p.into(), w)).collect(),
        Err(e) => return -e,
    };
    match namespaces::expose(&paths, uid) {
        Ok(covered) => covered.len() as i32,
        Err(e) => -e.abs(),
    }
}

/// In the forked child: its own mount namespace with a tmpfs of at most
/// `scratch_bytes` on the scratch dir, then `uid` (negative: keep the
/// current one), then no capabilities.
///
/// # Safety
/// `scratch` must be non-null and point to `len` readable bytes (even when
/// `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sluice_enter(scratch: *const u8, len: usize, scratch_bytes: u64, uid: i64) -> i32 {
    // SAFETY: per the contract above, `scratch` is non-null and points to `len`
    // readable bytes that live for the call (the harness passes a Python
    // bytes object); `u8` needs no alignment.
    let bytes = unsafe { std::slice::from_raw_parts(scratch, len) };
    let Ok(path) = std::str::from_utf8(bytes) else { return -libc::EINVAL };
    let uid = u32::try_from(uid).ok();
    errno_result(namespaces::enter(std::path::Path::new(path), scratch_bytes, uid))
}

/// Apply the per-request rlimits in the forked child. 0 means "leave as is"
/// for every argument except `core_bytes`, which is always applied.
#[unsafe(no_mangle)]
pub extern "C" fn sluice_set_rlimits(
    cpu_s: u64,
    address_space_bytes: u64,
    nproc: u64,
    nofile: u64,
    fsize_bytes: u64,
    core_bytes: u64,
) -> i32 {
    let l = limits::Limits { cpu_s, address_space_bytes, nproc, nofile, fsize_bytes, core_bytes };
    errno_result(limits::apply(&l))
}

/// The Landlock ABI sluice uses (0 when Landlock is unavailable): the
/// kernel's, capped by `SLUICE_LANDLOCK_ABI_MAX`.
#[unsafe(no_mangle)]
pub extern "C" fn sluice_landlock_abi() -> i32 {
    fs_rules::abi_in_use()
}

/// The kernel's own Landlock ABI version (0 when unavailable).
#[unsafe(no_mangle)]
pub extern "C" fn sluice_landlock_kernel_abi() -> i32 {
    fs_rules::kernel_abi()
}

/// Restrict the filesystem to the rules in `spec` (see `fs_rules`).
/// Returns 0 (fully enforced), 1 (partially) or a negated errno.
///
/// # Safety
/// `spec` must be non-null and point to `len` readable bytes (even when
/// `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sluice_apply_landlock(spec: *const u8, len: usize) -> i32 {
    // SAFETY: per the contract above, `spec` is non-null and points to `len`
    // readable bytes that live for the call (the harness passes a Python
    // bytes object); `u8` needs no alignment.
    let bytes = unsafe { std::slice::from_raw_parts(spec, len) };
    let Ok(text) = std::str::from_utf8(bytes) else { return -libc::EINVAL };
    match fs_rules::apply(text) {
        Ok(e) => e as i32,
        Err(e) => -e.abs(),
    }
}

/// Report blocked system calls as a result frame on `fd`, then exit.
#[unsafe(no_mangle)]
pub extern "C" fn sluice_install_sigsys_reporter(fd: i32) -> i32 {
    errno_result(sigsys::install(fd))
}

/// Set no_new_privs and load the seccomp filters in `bpf` (the server's
/// wire format), with `pid` patched into the "only yourself" rules.
///
/// # Safety
/// `bpf` must be non-null and point to `len` readable bytes (even when
/// `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sluice_apply_seccomp(bpf: *const u8, len: usize, pid: i32) -> i32 {
    // SAFETY: per the contract above, `bpf` is non-null and points to `len`
    // readable bytes that live for the call (the harness passes a Python
    // bytes object); `u8` needs no alignment.
    let bytes = unsafe { std::slice::from_raw_parts(bpf, len) };
    errno_result(seccomp::apply(bytes, pid as u32))
}

fn errno_result(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => -e.abs(),
    }
}
