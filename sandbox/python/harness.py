"""sluice fork server (zygote) and in-sandbox harness.

The server starts this file with the environment's Python, an empty
environment and `-I -B`. The process:

1. isolates itself (its own user, network and mount namespaces; dies with
   the server) and, when the server runs as root, makes the directories its
   children need reachable by their unprivileged uids,
2. imports the scientific stack once (the expensive part),
3. checks it is still single-threaded (forking a threaded process is unsafe),
4. serves requests on the control socket (fd 0, a Unix SOCK_DGRAM): each
   request carries two pipe fds; the zygote forks a child that enters the
   sandbox (its own scratch tmpfs and uid first), reads code and rows from
   the first pipe, runs `classify(df)` and writes one JSON result to the
   second pipe. The zygote reaps the child, enforces the wall-clock limit,
   kills it when the server says its request ended, and reports the ending
   (signal, exit code, CPU, peak memory) to the server.

The zygote never reads request data and never runs user code itself.
"""

import ctypes
import json
import gc
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

PROTOCOL_VERSION = 1
ABI_VERSION = 3  # of libsluice_sandbox.so (sandbox/src/lib.rs)
MAX_CTL_MESSAGE = 64 * 1024
AS_HEADROOM_MB = 256
# Errors are read by people and LLMs: keep them short.
MAX_MESSAGE_CHARS = 1000
MAX_TRACEBACK_CHARS = 8000
USER_FILENAME = "<classifier>"

# The child decides success, syntax_error, missing_entrypoint, runtime_error,
# invalid_output, memory_limit (MemoryError), output_limit; the server adds
# what only it can see (timeouts, kills by signal, sql_*).
SUCCESS = "success"


def log(msg):
    # The zygote's stderr is the server's log.
    sys.__stderr__.write(f"sluice-zygote[{os.getpid()}]: {msg}\n")
    sys.__stderr__.flush()


class Native:
    """The sandbox crate's C ABI (libsluice_sandbox.so, sandbox/src/lib.rs)."""

    def __init__(self, path):
        lib = ctypes.CDLL(path, use_errno=True)
        c = ctypes
        sigs = {
            "sluice_abi_version": [],
            "sluice_die_with_parent": [c.c_int],
            "sluice_isolate": [c.c_uint32, c.c_uint32],
            "sluice_expose": [c.c_char_p, c.c_size_t, c.c_uint32],
            "sluice_enter": [c.c_char_p, c.c_size_t, c.c_uint64, c.c_int64],
            "sluice_set_rlimits": [c.c_uint64] * 6,
            "sluice_landlock_abi": [],
            "sluice_apply_landlock": [c.c_char_p, c.c_size_t],
            "sluice_install_sigsys_reporter": [c.c_int],
            "sluice_apply_seccomp": [c.c_char_p, c.c_size_t, c.c_int],
        }
        for name, args in sigs.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = c.c_int
        if lib.sluice_abi_version() != ABI_VERSION:
            raise RuntimeError("libsluice_sandbox ABI mismatch")
        self.lib = lib

    def check(self, what, rc):
        if rc < 0:
            raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
        return rc

    def die_with_parent(self, expected_parent):
        self.check("prctl(PR_SET_PDEATHSIG)", self.lib.sluice_die_with_parent(expected_parent))

    def isolate(self, id_base, id_count):
        """0: user + network + mount namespaces, 1: network + mount only."""
        return self.check(
            "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS)", self.lib.sluice_isolate(id_base, id_count)
        )

    def expose(self, spec, uid):
        data = spec.encode()
        return self.check("expose", self.lib.sluice_expose(data, len(data), uid))

    def enter(self, scratch, scratch_bytes, uid):
        data = scratch.encode()
        self.check("scratch tmpfs and uid", self.lib.sluice_enter(data, len(data), scratch_bytes, uid))

    def set_rlimits(self, cpu_s, address_space, nproc, nofile, fsize):
        self.check("setrlimit", self.lib.sluice_set_rlimits(cpu_s, address_space, nproc, nofile, fsize, 0))

    def landlock_abi(self):
        return self.lib.sluice_landlock_abi()

    def apply_landlock(self, spec):
        data = spec.encode()
        return self.check("landlock", self.lib.sluice_apply_landlock(data, len(data)))

    def install_sigsys_reporter(self, fd):
        self.check("sigaction(SIGSYS)", self.lib.sluice_install_sigsys_reporter(fd))

    def apply_seccomp(self, bpf, pid):
        self.check("seccomp", self.lib.sluice_apply_seccomp(bpf, len(bpf), pid))


# --------------------------------------------------------------------------
# Zygote start-up


def warm_up():
    """Import everything a classifier is likely to use, once."""
    t0 = time.monotonic()
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyarrow.ipc  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn  # noqa: F401
    import sklearn.base  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.neighbors  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import sklearn.tree  # noqa: F401
    import traceback  # noqa: F401
    import warnings  # noqa: F401
    import linecache  # noqa: F401
    import tempfile  # noqa: F401
    import re  # noqa: F401
    import math  # noqa: F401
    import collections  # noqa: F401

    import joblib.parallel as jp
    from joblib._parallel_backends import ThreadingBackend

    # Classifiers written for a laptop use n_jobs=-1. Process pools cannot
    # work in the jail (no fork, no exec), so every joblib backend that would
    # start processes runs on threads instead.
    jp.DEFAULT_BACKEND = "threading"
    for name in ("loky", "multiprocessing"):
        jp.BACKENDS[name] = ThreadingBackend

    thread_based_multiprocessing_locks()

    # joblib counts CPUs by reading cgroup files (outside the child's
    # filesystem) and, for physical cores, by running lscpu (no exec in the
    # child). Count once here; children reuse the answers.
    from joblib.externals.loky.backend import context as loky_context

    cgroup_cpus = loky_context._cpu_count_cgroup(os.cpu_count())
    loky_context._cpu_count_cgroup = lambda os_cpu_count, _n=cgroup_cpus: _n
    loky_context.cpu_count(only_physical_cores=True)  # fills loky's cache

    warm_request_path()
    return (time.monotonic() - t0) * 1000.0


def thread_based_multiprocessing_locks():
    """multiprocessing's locks are POSIX semaphores in /dev/shm, which the
    child cannot open; and the child can start no process to share one
    with. multiprocessing.pool.ThreadPool (joblib's threading backend, so
    n_jobs=-1) creates such locks, so they become thread locks."""
    import multiprocessing.synchronize as mps
    import threading

    mps.Lock = lambda *, ctx=None: threading.Lock()
    mps.RLock = lambda *, ctx=None: threading.RLock()
    mps.Semaphore = lambda value=1, *, ctx=None: threading.Semaphore(value)
    mps.BoundedSemaphore = lambda value=1, *, ctx=None: threading.BoundedSemaphore(value)
    mps.Condition = lambda lock=None, *, ctx=None: threading.Condition(lock)
    mps.Event = lambda *, ctx=None: threading.Event()
    mps.Barrier = lambda parties, action=None, timeout=None, *, ctx=None: threading.Barrier(parties, action, timeout)


def warm_request_path():
    """Run the per-request path once in the zygote, so that pandas' and
    pyarrow's lazy imports and caches are part of the image every child
    starts from instead of being redone (with copy-on-write faults) in each."""
    import pyarrow as pa

    table = pa.table(
        {
            "i": pa.array([1, None, 3], pa.int64()),
            "j": pa.array([1, 2, 3], pa.int64()),
            "f": pa.array([0.5, None, 1.5], pa.float64()),
            "s": pa.array(["a", None, "c"], pa.string()),
            "b": pa.array([True, False, None], pa.bool_()),
            "y": pa.array([b"x", None, b"z"], pa.binary()),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    df = to_dataframe(memoryview(sink.getvalue().to_pybytes()))
    out = Capture(1024)
    code = "def classify(df):\n    return [str(v) for v in df['s']]\n"
    labels, scores = validate_output(run_user_code(code, "classify", df, out, out), len(df))
    json.dumps({"p": labels, "s": scores})
    try:
        run_user_code("def classify(df):\n    return df['nope']\n", "classify", df, out, out)
    except Verdict:
        pass


def seccomp_available():
    # PR_GET_SECCOMP answers 0 (not filtered) when the kernel has seccomp,
    # EINVAL when it does not.
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(21, 0, 0, 0, 0) >= 0


def thread_count():
    return len(os.listdir("/proc/self/task"))


def proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------
# Zygote loop


class Zygote:
    def __init__(self, native, ctl, mount_namespace):
        self.native = native
        self.ctl = ctl
        self.mount_namespace = mount_namespace
        self.programs = {}  # seccomp wire-format files, read once
        self.children = {}  # pid -> dict(id, deadline, started)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup_r = rfd
        self.wakeup_w = wfd
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def send(self, obj):
        self.ctl.send(json.dumps(obj).encode())

    def seccomp_program(self, path):
        prog = self.programs.get(path)
        if prog is None:
            with open(path, "rb") as f:
                prog = self.programs[path] = f.read()
        return prog

    def serve(self):
        poller = select.poll()
        poller.register(self.ctl.fileno(), select.POLLIN)
        poller.register(self.wakeup_r, select.POLLIN)
        while True:
            timeout_ms = self.next_deadline_ms()
            try:
                events = poller.poll(timeout_ms)
            except InterruptedError:
                events = []
            for fd, ev in events:
                if fd == self.wakeup_r:
                    self.drain_wakeup()
                elif fd == self.ctl.fileno():
                    if not self.handle_ctl():
                        self.shutdown()
                        return
            self.enforce_deadlines()
            self.reap()

    def next_deadline_ms(self):
        if not self.children:
            return -1
        now = time.monotonic()
        nearest = min(c["deadline"] for c in self.children.values())
        return max(0, int((nearest - now) * 1000) + 1)

    def drain_wakeup(self):
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    def handle_ctl(self):
        try:
            msg, fds, _flags, _addr = socket.recv_fds(self.ctl, MAX_CTL_MESSAGE, 4)
        except InterruptedError:
            return True
        if not msg:
            # An empty datagram: the server asks us to stop. (If the server
            # dies instead, the parent-death signal ends us.)
            for fd in fds:
                os.close(fd)
            return False
        try:
            req = json.loads(msg)
        except ValueError:
            for fd in fds:
                os.close(fd)
            log("malformed control message")
            return True
        if req.get("op") == "kill":
            for fd in fds:
                os.close(fd)
            self.kill(req.get("id"))
            return True
        if req.get("op") != "run" or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"event": "error", "id": req.get("id"), "message": "bad request"})
            return True
        in_fd, out_fd = fds
        if req.get("seccomp"):
            try:
                self.seccomp_program(req["seccomp"])
            except OSError as e:
                os.close(in_fd)
                os.close(out_fd)
                self.send({"event": "error", "id": req["id"], "message": f"seccomp profile: {e}"})
                return True
        try:
            pid = os.fork()
        except OSError as e:
            os.close(in_fd)
            os.close(out_fd)
            self.send({"event": "error", "id": req["id"], "message": f"fork failed: {e}"})
            return True
        if pid == 0:
            child_main(self, req, in_fd, out_fd)  # never returns
        os.close(in_fd)
        os.close(out_fd)
        now = time.monotonic()
        self.children[pid] = {
            "id": req["id"],
            "deadline": now + float(req["timeout_s"]),
            "started": now,
            "killed": None,
        }
        self.send({"event": "started", "id": req["id"], "pid": pid})
        return True

    def kill(self, request_id):
        """The server is done with this request: its child goes now."""
        for pid, c in self.children.items():
            if c["id"] == request_id:
                if c["killed"] is None:
                    c["killed"] = "request_ended"
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def enforce_deadlines(self):
        now = time.monotonic()
        for pid, c in self.children.items():
            if c["killed"] is None and now >= c["deadline"]:
                c["killed"] = "wall_clock"
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def reap(self):
        while self.children:
            try:
                pid, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            c = self.children.pop(pid, None)
            if c is None:
                continue
            self.send(
                {
                    "event": "exited",
                    "id": c["id"],
                    "pid": pid,
                    "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    "cpu_ms": int((ru.ru_utime + ru.ru_stime) * 1000),
                    "maxrss_kb": ru.ru_maxrss,
                    "wall_ms": (time.monotonic() - c["started"]) * 1000.0,
                    "killed": c["killed"],
                }
            )

    def shutdown(self):
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------
# The child: one request, then _exit.


class Capture:
    """A text stream that keeps the first `limit` bytes and counts the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.size = 0
        self.truncated = False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.size
        if room > 0:
            b = s.encode("utf-8", "replace")
            if len(b) > room:
                b = b[:room]
                self.truncated = True
            self.parts.append(b)
            self.size += len(b)
        elif s:
            self.truncated = True
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    @property
    def encoding(self):
        return "utf-8"

    def getvalue(self):
        return b"".join(self.parts).decode("utf-8", "replace")


class Verdict(Exception):
    """Ends the child with a non-success status."""

    def __init__(self, status, message, **detail):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def child_main(zygote, req, in_fd, out_fd):
    """Runs in the forked child. Never returns: the process ends in _exit."""
    code = 0
    try:
        result = run_child(zygote, req, in_fd, out_fd)
    except MemoryError:
        # The rows themselves did not fit (reading or converting them).
        result = {
            "status": "memory_limit",
            "error": {"message": "the query's rows did not fit in memory while loading them into a DataFrame"},
        }
    except BaseException as e:  # noqa: BLE001 - the harness must always answer
        result = {"status": "internal_error", "error": {"message": f"harness: {type(e).__name__}: {e}"}}
        code = 70
    try:
        write_result(out_fd, result, req)
    except BaseException:  # noqa: BLE001
        code = 71
    # Close the result pipe before _exit: the parent sees EOF before this
    # process's memory teardown, which is the slow part of exiting.
    try:
        os.close(out_fd)
    except OSError:
        pass
    os._exit(code)


def write_result(out_fd, result, req):
    # Labels were checked; elsewhere (a traceback, a message) a lone
    # surrogate becomes "?" rather than an unreadable frame.
    data = json.dumps(result, allow_nan=False, ensure_ascii=False).encode("utf-8", "replace")
    view = memoryview(data)
    while view:
        n = os.write(out_fd, view)
        view = view[n:]


def run_child(zygote, req, in_fd, out_fd):
    native = zygote.native
    timings = {}
    t0 = time.monotonic()

    # Step 1: leave the zygote's event loop behind.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # A file over RLIMIT_FSIZE should fail the write (EFBIG), not kill us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    native.die_with_parent(zygote_pid())

    # Step 2: file descriptors: only our two pipes and /dev/null on 0-2.
    in_fd, out_fd = keep_only_fds(in_fd, out_fd)

    # Step 3: a mount namespace of its own with a fresh, size-limited tmpfs
    # as the scratch dir (gone with the process), its own unprivileged uid
    # (when the server runs as root), no capabilities.
    scratch = req["scratch"]
    if zygote.mount_namespace:
        uid = req.get("uid")
        native.enter(scratch, int(req["scratch_bytes"]), -1 if uid is None else int(uid))

    # Step 4: the scratch dir as working directory, a clean environment.
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update({"TMPDIR": scratch, "HOME": scratch, "LANG": "C.UTF-8"})
    import tempfile

    tempfile.tempdir = None

    # Step 5: resource limits. Address space counts what the zygote already
    # mapped, so the request's memory budget comes on top of that, plus a
    # fixed headroom for what is reserved but rarely used: thread stacks,
    # malloc arenas, the harness's own copy of the rows.
    vm_kb = proc_status_kb("VmSize")
    native.set_rlimits(
        int(req["cpu_s"]),
        vm_kb * 1024 + (int(req["memory_mb"]) + AS_HEADROOM_MB) * 1024 * 1024,
        int(req["nproc"]),
        int(req["nofile"]),
        int(req["fsize_bytes"]),
    )

    # Step 6: landlock: the filesystem shrinks to the interpreter, the
    # environment, system libraries and the scratch dir.
    sandbox = req.get("sandbox") or {}
    t_step = time.monotonic()
    if sandbox.get("landlock", True):
        native.apply_landlock(landlock_spec(scratch))
    timings["landlock_ms"] = (time.monotonic() - t_step) * 1000.0

    # Step 7: seccomp, last: from here on only the allow-listed system calls
    # work, and a blocked one is reported on the result pipe.
    t_step = time.monotonic()
    if sandbox.get("seccomp", True):
        native.install_sigsys_reporter(out_fd)
        native.apply_seccomp(zygote.seccomp_program(req["seccomp"]), os.getpid())
    timings["seccomp_ms"] = (time.monotonic() - t_step) * 1000.0

    # Step 8: read the request.
    payload = read_all(in_fd)
    os.close(in_fd)
    (code_len,) = struct.unpack_from("<I", payload, 0)
    source = bytes(payload[4 : 4 + code_len]).decode("utf-8")
    arrow = memoryview(payload)[4 + code_len :]
    timings["read_ms"] = (time.monotonic() - t0) * 1000.0

    stdout = Capture(int(req["stdout_limit"]))
    stderr = Capture(int(req["stderr_limit"]))
    result = {"status": SUCCESS}
    try:
        t1 = time.monotonic()
        df = to_dataframe(arrow)
        _COLUMNS[:] = [str(c) for c in df.columns]
        timings["frame_ms"] = (time.monotonic() - t1) * 1000.0
        t2 = time.monotonic()
        output = run_user_code(source, req.get("entrypoint") or "classify", df, stdout, stderr)
        timings["user_ms"] = (time.monotonic() - t2) * 1000.0
        labels, scores = validate_output(output, len(df))
        result["predictions"] = labels
        result["scores"] = scores
    except Verdict as v:
        result = {"status": v.status, "error": {"message": v.message, **v.detail}}
    result["stdout"] = stdout.getvalue()
    result["stderr"] = stderr.getvalue()
    result["stdout_truncated"] = stdout.truncated
    result["stderr_truncated"] = stderr.truncated
    result["timings"] = timings
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result["usage"] = {"cpu_ms": int((ru.ru_utime + ru.ru_stime) * 1000), "maxrss_kb": ru.ru_maxrss}

    if result["status"] == SUCCESS:
        size = len(json.dumps({"p": result["predictions"], "s": result["scores"]}, allow_nan=False))
        limit = int(req["output_limit"])
        if size > limit:
            result = {
                "status": "output_limit",
                "error": {
                    "message": f"the result is {size} bytes, over the policy's limit of {limit} bytes; "
                    "return one short label per row (or fewer scores)",
                    "limit_bytes": limit,
                },
                **{k: result[k] for k in ("stdout", "stderr", "stdout_truncated", "stderr_truncated", "timings", "usage")},
            }
    return result


def child_read_paths():
    """The interpreter and the environment (exposed and landlocked)."""
    return sorted(
        {
            sys.prefix,  # the environment
            sys.base_prefix,  # the interpreter and its standard library
            os.path.dirname(os.path.realpath(sys.executable)),
        }
    )


def landlock_spec(scratch):
    """What the child may read (r) or also write (rw). Paths that do not
    exist on this host are skipped by the native side."""
    read = {
        *child_read_paths(),
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
    lines = [f"r:{p}" for p in sorted(read)]
    lines += [f"rw:{scratch}", "rw:/dev/null"]
    return "\n".join(lines)


def zygote_pid():
    return os.getppid()


def keep_only_fds(in_fd, out_fd):
    # Move our pipes above the standard range, put /dev/null on 0-2, close
    # everything else (the control socket, the wakeup pipe, library fds).
    in_new = os.dup(in_fd) if in_fd < 3 else in_fd
    out_new = os.dup(out_fd) if out_fd < 3 else out_fd
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != devnull:
            os.dup2(devnull, fd)
    keep = sorted({0, 1, 2, in_new, out_new})
    lo = 3
    for fd in keep:
        if fd >= lo:
            os.closerange(lo, fd)
            lo = fd + 1
    os.closerange(lo, 65536)
    return in_new, out_new


def read_all(fd):
    buf = bytearray()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return buf
        buf += chunk


def to_dataframe(arrow):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc

    # No Arrow thread pool: the zygote runs this once at warm-up and must
    # stay single-threaded.
    options = pyarrow.ipc.IpcReadOptions(use_threads=False)
    table = pyarrow.ipc.open_stream(pa.py_buffer(arrow), options=options).read_all()
    df = table.to_pandas(use_threads=False)
    # Integer columns with NULLs stay integers (pandas' nullable dtypes)
    # instead of silently becoming float; decimals keep their digits.
    for i, field in enumerate(table.schema):
        col = table.column(i)
        meta = field.metadata or {}
        if meta.get(b"sluice:type") == b"decimal":
            import decimal

            df[field.name] = pd.Series(
                [None if v is None else decimal.Decimal(v) for v in col.to_pylist()], dtype=object, index=df.index
            )
            continue
        if pa.types.is_boolean(field.type) and col.null_count > 0:
            df[field.name] = col.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get, use_threads=False)
        elif pa.types.is_integer(field.type) and col.null_count > 0:
            df[field.name] = col.to_pandas(types_mapper=_nullable_int_mapper(pd, pa), use_threads=False)
    return df


def _nullable_int_mapper(pd, pa):
    mapping = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
    }
    return mapping.get


def run_user_code(source, entrypoint, df, stdout, stderr):
    import builtins
    import linecache
    import warnings

    # Tracebacks show the user's lines.
    linecache.cache[USER_FILENAME] = (len(source), None, source.splitlines(True), USER_FILENAME)
    try:
        compiled = compile(source, USER_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise Verdict(
            "syntax_error",
            f"{e.msg} (line {e.lineno}, column {e.offset})",
            line=e.lineno,
            offset=e.offset,
            text=(e.text or "").rstrip("\n") or None,
        ) from None
    except ValueError as e:  # e.g. source code string cannot contain null bytes
        raise Verdict("syntax_error", str(e), line=None, offset=None) from None

    # Not __main__: an `if __name__ == "__main__":` demo block does not run.
    namespace = {"__name__": "classifier", "__builtins__": builtins, "__file__": USER_FILENAME}
    old_out, old_err = sys.stdout, sys.stderr
    # Warnings go to sys.stderr at the time they are shown: captured too.
    sys.stdout, sys.stderr = stdout, stderr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                exec(compiled, namespace)
            except BaseException as e:  # noqa: BLE001
                raise user_exception(e, "while loading the code (module level)") from None
            fn = namespace.get(entrypoint)
            if not callable(fn):
                defined = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("__") and getattr(v, "__module__", None) == "classifier")
                hint = f"; functions defined: {', '.join(defined)}" if defined else "; the code defines no functions"
                what = "is not defined" if fn is None else f"is a {type(fn).__name__}, not a function"
                raise Verdict(
                    "missing_entrypoint",
                    f"`{entrypoint}` {what}{hint}. Define `def {entrypoint}(df):` returning one label per row",
                    entrypoint=entrypoint,
                    defined=defined,
                )
            try:
                return fn(df)
            except BaseException as e:  # noqa: BLE001
                raise user_exception(e, f"in {entrypoint}(df)") from None
    finally:
        sys.stdout.flush()
        sys.stdout, sys.stderr = old_out, old_err


def user_exception(e, where):
    import traceback

    if isinstance(e, Verdict):
        return e
    if isinstance(e, MemoryError):
        return Verdict("memory_limit", f"the code ran out of memory {where} ({type(e).__name__})")
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == USER_FILENAME]
    line = frames[-1].lineno if frames else None
    tb = "".join(traceback.format_list(frames)) if frames else ""
    tb = "Traceback (most recent call last, your code only):\n" + tb + "".join(
        traceback.format_exception_only(type(e), e)
    )
    msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    msg = _clip(msg, MAX_MESSAGE_CHARS)
    tb = _clip(tb, MAX_TRACEBACK_CHARS)
    if isinstance(e, PermissionError):
        return Verdict(
            "security_violation",
            f"the sandbox denied an operation {where}: {msg}",
            type=type(e).__name__,
            line=line,
            traceback=tb,
        )
    if isinstance(e, KeyError) and _COLUMNS and e.args and isinstance(e.args[0], str) and e.args[0] not in _COLUMNS:
        msg = (
            f"KeyError: column {e.args[0]!r} does not exist {where}"
            + (f" at line {line}" if line else "")
            + f"; the DataFrame's columns are: {', '.join(map(str, _COLUMNS))}"
        )
        return Verdict("runtime_error", _clip(msg, MAX_MESSAGE_CHARS), type="KeyError", line=line, traceback=tb)
    if isinstance(e, SystemExit):
        msg = f"the code called exit({e.code!r}) {where}; return the labels instead"
    elif isinstance(e, KeyboardInterrupt):
        msg = f"KeyboardInterrupt {where}"
    else:
        msg = f"{msg} {where}" + (f" at line {line}" if line else "")
    return Verdict("runtime_error", msg, type=type(e).__name__, line=line, traceback=tb)


LABEL_TYPES = (str, int, float, bool, type(None))
_COLUMNS = []  # the current request's column names, for error hints


def validate_output(output, n_rows):
    import numpy as np
    import pandas as pd

    scores = None
    if isinstance(output, dict):
        extra = set(output) - {"labels", "scores"}
        if "labels" not in output or extra:
            raise Verdict(
                "invalid_output",
                "a dict result must be {'labels': [...], 'scores': [...]}"
                + (f"; unexpected keys: {sorted(map(str, extra))}" if extra else "; 'labels' is missing"),
                reason="bad_dict",
            )
        labels = to_label_list(output["labels"], n_rows, "labels", np, pd)
        if output.get("scores") is not None:
            raw = to_label_list(output["scores"], n_rows, "scores", np, pd)
            scores = []
            for i, s in enumerate(raw):
                if isinstance(s, bool) or not isinstance(s, (int, float)) and s is not None:
                    raise Verdict(
                        "invalid_output",
                        f"scores[{i}] is {type(s).__name__} {s!r}; scores must be numbers",
                        reason="bad_score_type",
                        index=i,
                    )
                scores.append(None if s is None else float(s))
        return labels, scores
    labels = to_label_list(output, n_rows, "the result", np, pd)
    return labels, scores


def to_label_list(value, n_rows, what, np, pd):
    if isinstance(value, pd.DataFrame):
        raise Verdict(
            "invalid_output",
            f"{what} is a DataFrame with {value.shape[1]} columns; return one label per row "
            "(a list, numpy array or Series), e.g. df['col'] or a list",
            reason="dataframe",
        )
    if isinstance(value, pd.Series):
        items = value.tolist()
    elif isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise Verdict(
                "invalid_output",
                f"{what} is a {value.ndim}-dimensional array of shape {value.shape}; return a 1-dimensional array with one label per row",
                reason="bad_shape",
            )
        items = value.tolist()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif value is None:
        raise Verdict(
            "invalid_output",
            f"{what} is None: did the function forget to `return` the labels?",
            reason="none",
        )
    else:
        raise Verdict(
            "invalid_output",
            f"{what} is a {type(value).__name__}; return a list, tuple, numpy array or pandas Series "
            "with one label per row, or {'labels': [...], 'scores': [...]}",
            reason="bad_type",
        )
    if len(items) != n_rows:
        raise Verdict(
            "invalid_output",
            f"{what} has {len(items)} items but the query returned {n_rows} rows; return exactly one label per row",
            reason="wrong_length",
            expected=n_rows,
            got=len(items),
        )
    out = []
    for i, x in enumerate(items):
        if isinstance(x, np.generic):
            x = x.item()
        if x is pd.NA or x is pd.NaT:
            x = None
        if isinstance(x, float) and x != x:
            x = None  # NaN is "no label"
        if not isinstance(x, LABEL_TYPES):
            raise Verdict(
                "invalid_output",
                f"{what}[{i}] is a {type(x).__name__} ({_short_repr(x)}); labels must be str, int, float, bool or None",
                reason="bad_label_type",
                index=i,
            )
        if isinstance(x, float) and x in (float("inf"), float("-inf")):
            raise Verdict(
                "invalid_output",
                f"{what}[{i}] is {x}; infinite numbers cannot be returned",
                reason="infinite",
                index=i,
            )
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError as e:
                raise Verdict(
                    "invalid_output",
                    f"{what}[{i}] is not valid Unicode text: {e.reason} at character {e.start} "
                    f"({_short_repr(x[e.start : e.end])}); labels must be text that UTF-8 can encode",
                    reason="not_unicode",
                    index=i,
                ) from None
        out.append(x)
    return out


def _clip(s, limit):
    if len(s) <= limit:
        return s
    return s[: limit - 40] + f" … [{len(s) - limit + 40} more characters]"


def _short_repr(x):
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


# --------------------------------------------------------------------------


def main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    # As root: the host uids (and gids) children run as, one per child.
    ap.add_argument("--uid-base", type=int, default=0)
    ap.add_argument("--uid-count", type=int, default=0)
    # Directories children must reach besides the interpreter's own.
    ap.add_argument("--expose", action="append", default=[])
    ap.add_argument("--expose-rw", action="append", default=[])
    args = ap.parse_args()

    native = Native(args.lib)
    native.die_with_parent(args.server_pid)
    ctl = socket.socket(fileno=0)
    isolation = {"user_namespace": False, "network_namespace": False, "mount_namespace": False, "error": None}
    try:
        level = native.isolate(args.uid_base, args.uid_count)
        isolation["network_namespace"] = True
        isolation["mount_namespace"] = True
        isolation["user_namespace"] = level == 0
        if args.uid_count:
            isolation["child_uids"] = [args.uid_base + 1, args.uid_base + args.uid_count - 1]
            # Children run as uids that own nothing: what they need must
            # not sit below a directory only root may search.
            spec = [f"r:{p}" for p in child_read_paths() + args.expose] + [f"rw:{p}" for p in args.expose_rw]
            isolation["covered"] = native.expose("\n".join(spec), args.uid_base)
    except OSError as e:
        isolation["error"] = str(e)
    isolation["uid"] = os.getuid()
    isolation["landlock_abi"] = native.landlock_abi()
    isolation["seccomp"] = seccomp_available()
    try:
        import_ms = warm_up()
    except BaseException as e:  # noqa: BLE001
        ctl.send(json.dumps({"event": "failed", "message": f"import failed: {type(e).__name__}: {e}"}).encode())
        return 1
    # Move everything imported so far out of the collector's reach: a child's
    # GC pass would otherwise touch (and copy) every page of the image.
    gc.collect()
    gc.freeze()
    threads = thread_count()
    if threads != 1:
        ctl.send(
            json.dumps(
                {"event": "failed", "message": f"the zygote has {threads} threads after imports; forking it is unsafe"}
            ).encode()
        )
        return 1
    import numpy
    import pandas
    import pyarrow
    import sklearn

    ctl.send(
        json.dumps(
            {
                "event": "ready",
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "versions": {
                    "numpy": numpy.__version__,
                    "pandas": pandas.__version__,
                    "pyarrow": pyarrow.__version__,
                    "scikit-learn": sklearn.__version__,
                },
                "import_ms": import_ms,
                "vm_kb": proc_status_kb("VmSize"),
                "rss_kb": proc_status_kb("VmRSS"),
                "threads": threads,
                "isolation": isolation,
            }
        ).encode()
    )
    Zygote(native, ctl, isolation["mount_namespace"]).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
