"""The fork server (zygote): start-up work done once, then one forked child
per request.

Start-up (called by harness.py `main`): `warm_up` imports the scientific
stack and runs the request path once, so every child starts from that image.
Then `Zygote.serve` answers the control socket (fd 0, a Unix SOCK_DGRAM):
each `spawn` carries two fds (the child's request channel, its result pipe)
and a JSON header (the policy's sandbox and ceilings); the zygote forks a
child (`runner.child_main`: enter the sandbox, warm up, wait for its one
request on the channel, run, answer, `_exit`), reaps it, starts its
wall-clock limit when the server hands it a request (`arm`), kills it when
the server says its request ended (`kill`), and reports the ending (signal,
exit code, CPU, peak memory) as an `exited` event. An empty datagram asks
it to stop.

The zygote never reads request data and never runs user code itself: the
server sends each request straight to its child.
"""

import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import sys
import time

import runner

MAX_CTL_MESSAGE = 64 * 1024


def log(msg):
    # The zygote's stderr is the server's log.
    sys.__stderr__.write(f"sluice-zygote[{os.getpid()}]: {msg}\n")
    sys.__stderr__.flush()


# --------------------------------------------------------------------------
# Zygote start-up


# What the zygote imports when the environment names nothing
# (environment.toml `preload`): the default stack, each module only if the
# environment has it.
DEFAULT_PRELOAD = (
    "pyarrow",
    "pyarrow.ipc",
    "scipy.stats",
    "sklearn",
    "sklearn.base",
    "sklearn.cluster",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.neighbors",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.tree",
)
# The harness's own needs (tracebacks, warnings), whatever the environment.
STDLIB_PRELOAD = ("traceback", "warnings", "linecache", "tempfile", "re", "math", "collections")


def installed(module):
    """Does the environment have `module`'s top-level package? (Without
    importing it.)"""
    import importlib.util

    return importlib.util.find_spec(module.split(".")[0]) is not None


def warm_up(preload=None, warm=True, warm_rows=b""):
    """Import everything a classifier is likely to use, once: `preload` (the
    environment's list) or the default stack's modules the environment has;
    run the request path on `warm_rows` (always: it proves the rows reader
    works here) and, with `warm`, a tiny fit of the usual estimators (when
    scikit-learn is there)."""
    import importlib

    t0 = time.monotonic()
    for required in ("numpy", "pandas"):
        if not installed(required):
            raise ImportError(
                f"the environment has no `{required}`: classify(df) receives a pandas DataFrame, so the "
                "environment's requirements.txt must pin pandas and numpy"
            )
    modules = list(preload) if preload is not None else [m for m in DEFAULT_PRELOAD if installed(m)]
    for m in ("numpy", "pandas", *modules, *STDLIB_PRELOAD):
        importlib.import_module(m)
    runner.HAVE_PYARROW = installed("pyarrow")

    if installed("joblib"):
        patch_joblib()
    thread_based_multiprocessing_locks()

    warm_request_path(warm_rows)
    if warm and installed("sklearn"):
        warm_estimators()
    return (time.monotonic() - t0) * 1000.0


def patch_joblib():
    import joblib.parallel as jp
    from joblib._parallel_backends import ThreadingBackend

    # Classifiers written for a laptop use n_jobs=-1. Process pools cannot
    # work in the jail (no fork, no exec), so every joblib backend that would
    # start processes runs on threads instead.
    jp.DEFAULT_BACKEND = "threading"
    for name in ("loky", "multiprocessing"):
        jp.BACKENDS[name] = ThreadingBackend

    # joblib counts CPUs by reading cgroup files (outside the child's
    # filesystem) and, for physical cores, by running lscpu (no exec in the
    # child). Count once here; children reuse the answers.
    from joblib.externals.loky.backend import context as loky_context

    cgroup_cpus = loky_context._cpu_count_cgroup(os.cpu_count())
    loky_context._cpu_count_cgroup = lambda os_cpu_count, _n=cgroup_cpus: _n
    loky_context.cpu_count(only_physical_cores=True)  # fills loky's cache


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


def warm_request_path(warm_rows):
    """Run the per-request path once in the zygote, on rows of every column
    kind the server's encoder wrote (`warm_rows`), so that pandas' and the
    rows reader's lazy imports and caches are part of the image every child
    starts from instead of being redone (with copy-on-write faults) in each."""
    # The rows arrive as a sealed memfd, mapped (a kernel that cannot map
    # one fails the zygote's start here, not every request).
    fd = os.memfd_create("sluice-warm-up", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, warm_rows)
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    df = runner.to_dataframe(runner.map_rows(fd))  # closes fd
    out = runner.Capture(1024)
    for code in (
        "def classify(df):\n    return [str(v) for v in df['s']]\n",
        "def classify(df):\n    return df['f']\n",
        "def classify(df):\n    return {'labels': df['i'].fillna(0), 'scores': [0.5, 1, None]}\n",
    ):
        labels, scores = runner.validate_output(runner.run_user_code(code, "classify", df, out, out), len(df))
        runner.encode_labels(labels, scores)
    try:
        runner.run_user_code("def classify(df):\n    return df['nope']\n", "classify", df, out, out)
    except runner.Verdict:
        pass


def warm_estimators():
    """One tiny fit of the estimators classifiers use most, on a DataFrame as
    a classifier passes it: their lazy imports, input-validation paths and
    threadpoolctl's look at the loaded BLAS/OpenMP libraries happen once
    here, in the image every child starts from, instead of in each child
    (a child's first KMeans fit paid 25-45 ms for them). BLAS and OpenMP
    are pinned to one thread, so nothing here starts a thread (the zygote
    checks that before it serves)."""
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((40, 2)), columns=["a", "b"])
    y = (X["a"] > 0.5).map({True: "yes", False: "no"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        KMeans(n_clusters=3, n_init=2, random_state=0).fit_predict(X)
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y).predict(X)
        RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y).predict(X)
        DecisionTreeClassifier(random_state=0).fit(X, y).predict(X)
        KNeighborsClassifier(n_neighbors=3).fit(X, y).predict(X)
        train_test_split(X, y, random_state=0)


def seccomp_available():
    # PR_GET_SECCOMP answers 0 (not filtered) when the kernel has seccomp,
    # EINVAL when it does not.
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(21, 0, 0, 0, 0) >= 0


def thread_count():
    return len(os.listdir("/proc/self/task"))


# --------------------------------------------------------------------------
# Zygote loop


class Zygote:
    def __init__(self, native, ctl, mount_namespace):
        self.native = native
        self.ctl = ctl
        self.mount_namespace = mount_namespace
        self.programs = {}  # seccomp wire-format files, read once
        # pid -> dict(id, deadline (None until armed), started, killed)
        self.children = {}
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
        deadlines = [c["deadline"] for c in self.children.values() if c["deadline"] is not None]
        if not deadlines:
            return -1
        now = time.monotonic()
        nearest = min(deadlines)
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
        if req.get("op") in ("kill", "arm"):
            for fd in fds:
                os.close(fd)
            if req["op"] == "kill":
                self.kill(req.get("id"))
            else:
                self.arm(req.get("id"), req.get("start"), req.get("timeout_s"), req.get("cpu0_ns", 0))
            return True
        if req.get("op") != "spawn" or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"event": "error", "id": req.get("id"), "message": "bad request"})
            return True
        if req.get("seccomp"):
            try:
                self.seccomp_program(req["seccomp"])
            except OSError as e:
                for fd in fds:
                    os.close(fd)
                self.send({"event": "error", "id": req["id"], "message": f"seccomp profile: {e}"})
                return True
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            self.send({"event": "error", "id": req["id"], "message": f"fork failed: {e}"})
            return True
        if pid == 0:
            runner.child_main(self, req, fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.children[pid] = {"id": req["id"], "deadline": None, "started": time.monotonic(), "killed": None}
        self.send({"event": "started", "id": req["id"], "pid": pid})
        return True

    def arm(self, child_id, start, timeout_s, cpu0_ns):
        """The server handed this child its request at `start` (its
        CLOCK_MONOTONIC, which time.monotonic reads): its wall clock runs
        from then, however late this message is read, and the CPU it had
        used by then (entering the sandbox, warming up) is not the
        request's."""
        for c in self.children.values():
            if c["id"] == child_id and c["deadline"] is None:
                start = float(start)
                c["started"] = start
                c["deadline"] = start + float(timeout_s)
                c["cpu0_ns"] = int(cpu0_ns)

    def kill(self, request_id):
        """The server is done with this request: its child goes now. (The
        server kills a child whose result is in through its pidfd; this is
        for every other ending.)"""
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
            if c["killed"] is None and c["deadline"] is not None and now >= c["deadline"]:
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
                    "cpu_ms": max(0, int((ru.ru_utime + ru.ru_stime) * 1e9) - c.get("cpu0_ns", 0)) // 1_000_000,
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
