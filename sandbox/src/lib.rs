//! The code that runs inside sluice's jail.
//!
//! This crate is built twice: as an rlib (the server links it for shared
//! constants and tests) and as a cdylib that the Python zygote loads with
//! `ctypes`. The zygote and its forked children call the `extern "C"`
//! functions below; each returns 0 on success or a negated errno, so the
//! harness can name the step that failed.
//!
//! The child's entry is a straight list of steps, each failing loudly:
//! die-with-parent → fds → rlimits → (landlock → no_new_privs → seccomp)
//! → user code. The bracketed layers arrive with the hardening work; the
//! order is fixed here so they slot in right before user code runs.

pub mod limits;
pub mod namespaces;

/// Bumped whenever the C ABI below changes; the harness refuses a mismatch.
pub const ABI_VERSION: i32 = 1;

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

/// Move the calling (single-threaded) process into a new network namespace,
/// through a user namespace when not privileged. Called once by the zygote.
#[unsafe(no_mangle)]
pub extern "C" fn sluice_isolate_network() -> i32 {
    errno_result(namespaces::isolate_network())
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

fn errno_result(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => -e.abs(),
    }
}
