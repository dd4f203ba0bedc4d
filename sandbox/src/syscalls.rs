//! x86-64 system call names by number, for reporting which call the seccomp
//! filter blocked. Generated from `asm/unistd_64.h` (Linux 6.1 headers) plus
//! the calls added up to Linux 6.15; unknown numbers are reported as numbers.
//!
//! The table is kept in two parts, as the kernel numbers the calls:
//! x86-64's own numbers (0–334, `arch.rs`) and the numbers every
//! architecture shares (from 424, `generic.rs`); those between are
//! unassigned on x86-64.

mod arch;
mod generic;

/// `NAMES[nr]` is the name of system call `nr` ("" where unassigned).
pub const NAMES: [&str; 468] = {
    let mut names = [""; 468];
    let mut i = 0;
    while i < arch::NAMES.len() {
        names[i] = arch::NAMES[i];
        i += 1;
    }
    let mut i = 0;
    while i < generic::NAMES.len() {
        names[generic::FIRST + i] = generic::NAMES[i];
        i += 1;
    }
    names
};

// The two parts fit the table without overlapping and fill it to its end.
const _: () =
    assert!(arch::NAMES.len() <= generic::FIRST && generic::FIRST + generic::NAMES.len() == NAMES.len());

/// The name of x86-64 system call `nr`, if it has one.
pub fn name(nr: i64) -> Option<&'static str> {
    usize::try_from(nr).ok().and_then(|i| NAMES.get(i)).copied().filter(|n| !n.is_empty())
}
