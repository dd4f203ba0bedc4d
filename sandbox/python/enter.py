"""The forked child's way into the sandbox: one ordered list of steps,
then the arrival of its one request.

The order of STEPS is the heart of the security model: each step needs
something a later one takes away (privileges, the filesystem, system
calls), so they run exactly in this order, and the comment above each says
why it sits where it does. `enter(ctx)` runs them; any failure raises and
the child answers internal_error without running user code.

A child is forked and enters the sandbox before any request exists (a
pre-forked spare, under the policy's ceilings). `receive(ctx)` then waits
on its own request channel for exactly one request (header, code, the
rows' sealed memfd), lowers its limits to the request's and closes the
channel: a child runs one request and exits.

This module (like every harness module) is imported by the zygote before
it forks: once landlocked, the child cannot read the runtime directory.
"""

import array
import json
import os
import signal
import socket
import sys
import tempfile
import time

AS_HEADROOM_MB = 256
MB = 1024 * 1024

# (name, function below): resolved when the zygote imports this module, so
# a misspelt step fails the zygote's start, not a request.
STEPS = [
    # First, the zygote's event loop goes: a signal would otherwise write to
    # its wakeup pipe (shared after fork) and SIGCHLD has its handler. A file
    # over RLIMIT_FSIZE should fail the write (EFBIG), not kill the child.
    ("reset signals", "reset_signals"),
    # As early as possible: a child whose zygote is gone does not run on.
    ("die with parent", "die_with_parent"),
    # Before the uid change and the filters: nothing inherited from the
    # zygote (its control socket above all, its wakeup pipe, libraries' fds)
    # crosses into the sandbox: only its request channel and its result
    # pipe stay, and /dev/null on 0-2.
    ("keep only its pipes", "keep_only_its_pipes"),
    # Before seccomp (which allows neither pidfd_open nor sendmsg): the
    # server gets this process's own pidfd on its channel, and kills it
    # through it once its result is in, without waiting on the zygote.
    ("hand the server its pidfd", "send_pidfd"),
    # Needs the privileges it ends with: its own mount namespace with the
    # scratch tmpfs, its own uid (as root), no capabilities. Every later step
    # runs unprivileged.
    ("enter namespaces/uid", "enter_namespace_and_uid"),
    # After the mount: the working directory is the tmpfs, not what is under it.
    ("scratch dir, clean env", "scratch_dir_clean_env"),
    # Just before the filters: the address-space budget is the policy's
    # largest memory on top of what the process has mapped by now (lowered
    # to the request's on arrival: a limit can always be lowered).
    ("rlimits", "set_rlimits"),
    # Once the filesystem is final (the scratch rule must name the tmpfs, and
    # a landlocked process can no longer mount); before seccomp, which does
    # not allow landlock's own system calls.
    ("landlock", "apply_landlock"),
    # Before the filter whose blocked calls it reports (on the result pipe,
    # so after the pipes were renumbered).
    ("SIGSYS reporter", "install_sigsys_reporter"),
    # Last: no_new_privs, and from here on only the allow-listed system calls
    # work; every step above may still use any.
    ("seccomp", "apply_seccomp"),
]


class Context:
    """What the steps share: the zygote (its native binding, mount
    namespace and seccomp programs), the spawn header (the policy's
    ceilings; the request's limits replace them on arrival), the child's
    fds (renumbered by "keep only its pipes") and the timings the result
    frame reports."""

    def __init__(self, zygote, req, fds):
        self.zygote = zygote
        self.native = zygote.native
        self.req = req
        # The request channel (a Unix stream socket) and the result pipe.
        self.channel_fd, self.out_fd = fds
        self.channel = None
        # Set once its request has arrived.
        self.received = False
        self.timings = {}


def enter(ctx):
    """Run every step of STEPS, in order."""
    for _name, step in _STEP_FUNCTIONS:
        step(ctx)


# --------------------------------------------------------------------------
# The steps, in STEPS order.


def reset_signals(ctx):
    # Leave the zygote's event loop behind.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # A file over RLIMIT_FSIZE should fail the write (EFBIG), not kill us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def die_with_parent(ctx):
    ctx.native.die_with_parent(zygote_pid())


def keep_only_its_pipes(ctx):
    # File descriptors: only the request channel, the result pipe and
    # /dev/null on 0-2. The channel's socket object is made here, with its
    # family and type given, so no system call is needed to build it.
    ctx.channel_fd, ctx.out_fd = keep_only_fds(ctx.channel_fd, ctx.out_fd)
    ctx.channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=ctx.channel_fd)


def send_pidfd(ctx):
    pidfd = os.pidfd_open(os.getpid())
    try:
        ctx.channel.sendmsg([b"p"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))])
    finally:
        os.close(pidfd)


def enter_namespace_and_uid(ctx):
    # A mount namespace of its own with a fresh, size-limited tmpfs as the
    # scratch dir (gone with the process), its own unprivileged uid (when the
    # server runs as root), no capabilities.
    req = ctx.req
    scratch = req["scratch"]
    if ctx.zygote.mount_namespace:
        uid = req.get("uid")
        ctx.native.enter(scratch, int(req["max_scratch_mb"]) * MB, -1 if uid is None else int(uid))


def scratch_dir_clean_env(ctx):
    # The scratch dir as working directory, a clean environment.
    scratch = ctx.req["scratch"]
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update({"TMPDIR": scratch, "HOME": scratch, "LANG": "C.UTF-8"})
    tempfile.tempdir = None


def set_rlimits(ctx):
    # Address space counts what the zygote already mapped, so the request's
    # memory budget comes on top of that, plus a fixed headroom for what is
    # reserved but rarely used: thread stacks, malloc arenas, the harness's
    # own copy of the rows.
    apply_rlimits(ctx, ctx.req)


def apply_landlock(ctx):
    # The filesystem shrinks to the interpreter, the environment, system
    # libraries and the scratch dir.
    t_step = time.monotonic()
    if sandbox_options(ctx).get("landlock", True):
        ctx.native.apply_landlock(landlock_spec(ctx.req["scratch"]))
    add_ms(ctx.timings, "landlock_ms", t_step)


def install_sigsys_reporter(ctx):
    # A blocked system call is reported on the result pipe.
    t_step = time.monotonic()
    if sandbox_options(ctx).get("seccomp", True):
        ctx.native.install_sigsys_reporter(ctx.out_fd)
    add_ms(ctx.timings, "seccomp_ms", t_step)


def apply_seccomp(ctx):
    # From here on only the allow-listed system calls work. The program was
    # read by the zygote before the fork.
    t_step = time.monotonic()
    if sandbox_options(ctx).get("seccomp", True):
        ctx.native.apply_seccomp(ctx.zygote.seccomp_program(ctx.req["seccomp"]), os.getpid())
    add_ms(ctx.timings, "seccomp_ms", t_step)


_STEP_FUNCTIONS = [(name, globals()[fn]) for name, fn in STEPS]


# --------------------------------------------------------------------------
# The request's arrival, once every step above is in force.

# The header (limits, entrypoint) is small; the code follows it.
MAX_HEADER = 64 * 1024


def receive(ctx):
    """Wait for this child's one request on its channel: a 4-byte length,
    the JSON header, then the code up to EOF, with the rows' sealed memfd
    as the one fd passed along (SCM_RIGHTS). Then the limits come down to
    the request's and the channel is closed, before any user code runs.
    Returns (code text, rows fd)."""
    try:
        code, rows_fd = _read_request(ctx)
        lower_limits(ctx)
        # One byte: the request is here and the limits are the request's (a
        # spare that died while it waited never sends it, and the server
        # hands the request to another).
        os.write(ctx.channel.fileno(), b"r")
    finally:
        ctx.channel.close()
        ctx.channel = None
    return code, rows_fd


def _read_request(ctx):
    data = bytearray()
    fds = []
    while True:
        chunk, ancdata, flags, _ = ctx.channel.recvmsg(1 << 20, socket.CMSG_SPACE(4 * array.array("i").itemsize))
        if flags & socket.MSG_CTRUNC:
            raise RuntimeError("request channel: more than one fd was passed")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
        if not chunk:
            break
        data += chunk
    if len(fds) != 1 or len(data) < 4:
        for fd in fds:
            os.close(fd)
        raise RuntimeError(f"request channel: {len(fds)} fds and {len(data)} bytes, not one request")
    size = int.from_bytes(data[:4], "big")
    if size > MAX_HEADER or 4 + size > len(data):
        raise RuntimeError(f"request channel: bad header length {size}")
    header = json.loads(bytes(data[4 : 4 + size]))
    # The request's limits replace the policy's ceilings in the header the
    # rest of the child reads.
    ctx.req = {**ctx.req, **header["limits"], "entrypoint": header["entrypoint"]}
    return bytes(data[4 + size :]).decode("utf-8"), fds[0]


def lower_limits(ctx):
    # Down to the request's (the kernel refuses to raise a hard limit; the
    # native side clamps to the current one). Its cgroup's memory limit
    # was lowered by the server before the code was sent.
    apply_rlimits(ctx, ctx.req)


# --------------------------------------------------------------------------
# Helpers


def sandbox_options(ctx):
    """The server's switches for the layers (`landlock`, `seccomp`)."""
    return ctx.req.get("sandbox") or {}


def add_ms(timings, key, since):
    # The seccomp time is the reporter's and the filter's together.
    timings[key] = timings.get(key, 0.0) + (time.monotonic() - since) * 1000.0


def child_read_paths():
    """The interpreter and the environment (exposed and landlocked)."""
    return sorted(
        {
            sys.prefix,  # the environment
            sys.base_prefix,  # the interpreter and its standard library
            os.path.dirname(os.path.realpath(sys.executable)),
        }
    )


# The Landlock ABI the zygote found at start-up (the kernel's, capped by
# SLUICE_LANDLOCK_ABI_MAX); the child's environment is cleared before it
# applies its rules, so it is handed down here.
LANDLOCK_ABI = None
# Paths the environment lets its children read besides the interpreter's
# (environment.toml `read_paths`), handed down the same way.
EXTRA_READ = ()


def landlock_spec(scratch):
    """What the child may read (r) or also write (rw), under which ABI.
    Paths that do not exist on this host are skipped by the native side."""
    read = {
        *child_read_paths(),
        *EXTRA_READ,
        "/usr/lib",
        "/usr/lib64",
        "/lib",
        "/lib64",
        "/usr/share/zoneinfo",
        "/etc/ld.so.cache",  # the loader finds shared libraries through it
        "/dev/urandom",
        "/sys/devices/system/cpu",  # BLAS and joblib count CPUs here
        f"/proc/{os.getpid()}",  # its own /proc entry only
    }
    lines = [f"abi:{LANDLOCK_ABI}"] if LANDLOCK_ABI is not None else []
    lines += [f"r:{p}" for p in sorted(read)]
    lines += [f"rw:{scratch}", "rw:/dev/null"]
    return "\n".join(lines)


def zygote_pid():
    return os.getppid()


def keep_only_fds(*fds):
    # Move ours above the standard range, put /dev/null on 0-2, close
    # everything else (the control socket, the wakeup pipe, library fds).
    moved = [os.dup(fd) if fd < 3 else fd for fd in fds]
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != devnull:
            os.dup2(devnull, fd)
    keep = sorted({0, 1, 2, *moved})
    lo = 3
    for fd in keep:
        if fd >= lo:
            os.closerange(lo, fd)
            lo = fd + 1
    os.closerange(lo, 65536)
    return moved


def apply_rlimits(ctx, limits):
    vm_kb = proc_status_kb("VmSize")
    ctx.native.set_rlimits(
        int(limits["cpu_s"]),
        vm_kb * 1024 + (int(limits["memory_mb"]) + AS_HEADROOM_MB) * MB,
        int(limits["max_threads"]),
        int(limits["max_open_files"]),
        int(limits["max_file_size_mb"]) * MB,
    )


def proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
