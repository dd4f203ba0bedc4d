"""The floor of a fresh process per request, for bench/e2e.rs: the CPU a
fork of the zygote's image and its exit cost, with no sandbox layer, no
request and no IPC, and with a trivial DataFrame built and classified in
the child. Builds the image as the zygote does (zygote.warm_up: the same
imports and the estimators' warm-up; not the warm-up on the server's
rows, which needs the server) and prints one JSON line.

    python -I -B bench/fork_floor.py SANDBOX_PYTHON_DIR [N]
"""

import gc
import json
import os
import resource
import sys


def cpu_ms(who):
    r = resource.getrusage(who)
    return (r.ru_utime + r.ru_stime) * 1000.0


def forks(n, work):
    own0, kids0 = cpu_ms(resource.RUSAGE_SELF), cpu_ms(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            if work:
                work()
            os._exit(0)
        os.waitpid(pid, 0)
    return (cpu_ms(resource.RUSAGE_SELF) - own0) / n, (cpu_ms(resource.RUSAGE_CHILDREN) - kids0) / n


def main():
    sys.path.insert(0, sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    import zygote

    zygote.warm_request_path = lambda rows: None
    zygote.warm_up(None, True, b"")
    import numpy as np
    import pandas as pd

    def trivial():
        df = pd.DataFrame({"petal_width": np.linspace(0.1, 2.5, 150)})
        return ["wide" if w > 1.0 else "narrow" for w in df["petal_width"]]

    gc.collect()
    gc.freeze()
    forks(5, None)
    parent, child = forks(n, None)
    work_parent, work_child = forks(n, trivial)
    print(json.dumps({"forks": n, "parent_ms": parent, "child_ms": child, "work_parent_ms": work_parent,
                      "work_child_ms": work_child}))


main()
