"""sluice fork server (zygote) and in-sandbox harness: the entry point.

The server starts this file with the environment's Python, an empty
environment and `-I -B`. The process:

1. isolates itself (its own user, network and mount namespaces; dies with
   the server) and, when the server runs as root, makes the directories its
   children need reachable by their unprivileged uids,
2. imports the scientific stack once (the expensive part),
3. checks it is still single-threaded (forking a threaded process is unsafe),
4. serves requests on the control socket (fd 0, a Unix SOCK_DGRAM): each
   request carries three fds: the code pipe, the result pipe and the rows
   (an Arrow IPC stream in a sealed memfd); the zygote forks a child that
   enters the sandbox (its own scratch tmpfs and uid first), reads the code
   from the first pipe, maps the rows, runs `classify(df)` and writes one
   JSON result to the second pipe. The zygote reaps the child, enforces the
   wall-clock limit, kills it when the server says its request ended, and
   reports the ending (signal, exit code, CPU, peak memory) to the server.

The zygote never reads request data and never runs user code itself.

The modules, all in this file's directory (src/runtime.rs embeds and
writes them together):

  native.py   the ctypes binding to libsluice_sandbox.so
  zygote.py   the fork server: warm-up, control socket, deadlines, reaping
  enter.py    the child's way into the sandbox, as one ordered list of steps
  runner.py   the child inside the sandbox: code, rows, DataFrame, user
              code, the result frame
  labels.py   checking and encoding the labels the code returned
  arrow_lite.py  the rows' reader for environments without pyarrow
"""

import gc
import json
import os
import socket
import sys

PROTOCOL_VERSION = 5  # of the control socket (crate::executor::protocol::VERSION)
ABI_VERSION = 3  # of libsluice_sandbox.so (sandbox/src/lib.rs)

# `-I` leaves this file's directory off sys.path. Import every harness module
# now, before any fork: once landlocked, a child cannot read this directory.
# Then the directory comes off sys.path again, so the user's imports search
# the environment only, as before.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import runner  # noqa: E402,F401 - the child's code (zygote.py forks into it)
from enter import child_read_paths, proc_status_kb  # noqa: E402
from native import Native  # noqa: E402
from zygote import Zygote, seccomp_available, thread_count, warm_up  # noqa: E402

sys.path.remove(_HERE)


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
    # The environment's settings (environment.toml): extra paths children
    # may read, the modules to import (comma-separated; absent: the default
    # stack's, those installed), whether to warm (a tiny fit of the usual
    # estimators in the zygote, a DataFrame in each spare child), and the
    # server-written rows: every kind, read once by the zygote (always: it
    # proves the rows reader works), and the common kinds a spare warms on.
    ap.add_argument("--read-path", action="append", default=[])
    ap.add_argument("--preload")
    ap.add_argument("--no-warm", action="store_true")
    ap.add_argument("--warm-rows", required=True)
    ap.add_argument("--warm-child-rows", required=True)
    args = ap.parse_args()

    native = Native(args.lib, ABI_VERSION)
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
            read = child_read_paths() + args.expose + args.read_path
            spec = [f"r:{p}" for p in read] + [f"rw:{p}" for p in args.expose_rw]
            isolation["covered"] = native.expose("\n".join(spec), args.uid_base)
    except OSError as e:
        isolation["error"] = str(e)
    isolation["uid"] = os.getuid()
    isolation["landlock_abi"] = native.landlock_abi()
    isolation["landlock_kernel_abi"] = native.landlock_kernel_abi()
    sys.modules["enter"].LANDLOCK_ABI = isolation["landlock_abi"]
    sys.modules["enter"].EXTRA_READ = tuple(args.read_path)
    isolation["seccomp"] = seccomp_available()
    try:
        preload = None if args.preload is None else [m for m in args.preload.split(",") if m]
        with open(args.warm_rows, "rb") as f:
            warm_rows = f.read()
        if not args.no_warm:
            with open(args.warm_child_rows, "rb") as f:
                runner.WARM_ROWS = f.read()
        import_ms = warm_up(preload, warm=not args.no_warm, warm_rows=warm_rows)
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
    from importlib import metadata

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    ctl.send(
        json.dumps(
            {
                "event": "ready",
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "versions": {d: version(d) for d in ("numpy", "pandas", "pyarrow", "scikit-learn")},
                "rows_reader": "pyarrow" if runner.HAVE_PYARROW else "arrow_lite",
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
