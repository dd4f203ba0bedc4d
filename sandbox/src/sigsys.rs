//! The SIGSYS reporter: when the seccomp filter traps a call, the kernel
//! sends SIGSYS with the call's number. The handler writes one result frame
//! naming the call to the child's result pipe and ends the process, so the
//! caller learns *what* was blocked, not just that something was.
//!
//! Everything here runs inside a signal handler: no allocation, no locks,
//! only `write(2)` and `_exit(2)` (both allowed by the filter).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::syscalls;

static RESULT_FD: AtomicI32 = AtomicI32::new(-1);
static REPORTED: AtomicBool = AtomicBool::new(false);

/// `siginfo_t` as the kernel fills it for SIGSYS (the `_sigsys` member of
/// the union, on 64-bit Linux): signo, errno, code, padding, then
/// call_addr, syscall, arch.
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: *mut libc::c_void,
    syscall: i32,
    arch: u32,
}

/// Install the handler; `fd` is where the frame goes.
pub fn install(fd: i32) -> Result<(), i32> {
    RESULT_FD.store(fd, Ordering::SeqCst);
    // SAFETY: `sigaction` is given a zeroed, then fully initialised struct
    // whose handler is an `extern "C"` function with the SA_SIGINFO
    // signature; the previous action is not needed (null out-pointer).
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut())
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)) }
}

/// Why a family of calls is blocked, for the message.
fn reason(name: &str) -> &'static str {
    match name {
        "socket" | "socketpair" | "connect" | "bind" | "sendto" => {
            "network access is not available in the sandbox; work with the rows you were given"
        }
        "execve" | "execveat" | "fork" | "vfork" | "clone" | "clone3" => {
            "starting processes or programs is not allowed; do the work in-process (threads are fine)"
        }
        "kill" | "tgkill" | "tkill" | "rt_sigqueueinfo" | "rt_tgsigqueueinfo" | "pidfd_send_signal" => {
            "signals may only be sent to the classifier's own process"
        }
        "ptrace" | "process_vm_readv" | "process_vm_writev" | "pidfd_open" | "pidfd_getfd" | "kcmp" => {
            "other processes cannot be inspected"
        }
        "io_uring_setup" | "io_uring_enter" | "io_uring_register" => "io_uring is not available",
        _ => "the sandbox allows only the system calls that computing on the rows needs",
    }
}

extern "C" fn handler(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    if REPORTED.swap(true, Ordering::SeqCst) {
        // Another thread is reporting; its _exit ends us too.
        loop {
            // SAFETY: pause(2) has no arguments and is async-signal-safe.
            unsafe { libc::pause() };
        }
    }
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers;
    // for SIGSYS its union holds the `_sigsys` member laid out as above.
    let nr = unsafe { (*(info as *const SigsysInfo)).syscall } as i64;
    let mut buf = Frame::new();
    let name = syscalls::name(nr);
    buf.push(
        b"{\"status\":\"security_violation\",\"error\":{\"message\":\"the sandbox blocked the system call ",
    );
    match name {
        Some(n) => {
            buf.push(b"`");
            buf.push(n.as_bytes());
            buf.push(b"`");
        }
        None => {
            buf.push(b"number ");
            buf.push_int(nr);
        }
    }
    buf.push(b": ");
    buf.push(reason(name.unwrap_or("")).as_bytes());
    buf.push(b"\",\"syscall\":");
    match name {
        Some(n) => {
            buf.push(b"\"");
            buf.push(n.as_bytes());
            buf.push(b"\"");
        }
        None => buf.push(b"null"),
    }
    buf.push(b",\"syscall_nr\":");
    buf.push_int(nr);
    buf.push(b"}}");
    let fd = RESULT_FD.load(Ordering::SeqCst);
    let mut off = 0;
    while off < buf.len {
        // SAFETY: writes from a live stack buffer within its length.
        let n = unsafe { libc::write(fd, buf.bytes[off..].as_ptr().cast(), buf.len - off) };
        if n <= 0 {
            break;
        }
        off += n as usize;
    }
    // SAFETY: _exit(2) ends the process without running any user-space
    // cleanup, which is what a signal handler may do.
    unsafe { libc::_exit(0) };
}

/// A fixed-size buffer a signal handler can format into.
struct Frame {
    bytes: [u8; 512],
    len: usize,
}

impl Frame {
    fn new() -> Self {
        Self { bytes: [0; 512], len: 0 }
    }

    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_int(&mut self, mut v: i64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let neg = v < 0;
        if v == 0 {
            i -= 1;
            digits[i] = b'0';
        }
        while v != 0 {
            i -= 1;
            digits[i] = b'0' + (v % 10).unsigned_abs() as u8;
            v /= 10;
        }
        if neg {
            self.push(b"-");
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_formats_numbers_without_allocating() {
        let mut f = Frame::new();
        f.push(b"n=");
        f.push_int(0);
        f.push(b",");
        f.push_int(-41);
        f.push(b",");
        f.push_int(467);
        assert_eq!(&f.bytes[..f.len], b"n=0,-41,467");
    }
}
