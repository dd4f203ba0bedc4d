"""The unsandboxed warm worker that bench/e2e.rs sets beside sluice.

What users reach for instead of a sandbox: one long-lived interpreter with
the libraries imported once, no isolation, state kept between requests.
The bench starts it with the environment's interpreter (`-I -B -c`) and
the zygote's environment variables, and times each round trip.

Protocol, one JSON object per line each way:
  in:  {"sql": "...", "code": "...", "db": "/path/to/demo.sqlite"}
  out: {"labels": [...], "inproc_ms": 1.23}   or   {"error": "traceback"}
`inproc_ms` is read_sql + exec + classify + encoding the labels, timed
inside the worker: the same work without any IPC (the in-process floor).
"""

import json
import pathlib
import sqlite3
import sys
import time
import traceback

# Imported once, before the first request, as the zygote does.
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans  # noqa: F401


def plain(labels):
    """The labels as a list of plain Python values (int, str, ...)."""
    if isinstance(labels, (pd.Series, np.ndarray)):
        return labels.tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in labels]


def main():
    connections = {}  # one read-only connection per database, opened once
    for line in sys.stdin:
        try:
            req = json.loads(line)
            con = connections.get(req["db"])
            if con is None:
                uri = pathlib.Path(req["db"]).absolute().as_uri() + "?mode=ro"
                con = connections[req["db"]] = sqlite3.connect(uri, uri=True)
            t = time.perf_counter()
            df = pd.read_sql(req["sql"], con)
            namespace = {}
            exec(req["code"], namespace)
            labels = json.dumps(plain(namespace["classify"](df)))
            ms = (time.perf_counter() - t) * 1000.0
            out = '{"labels": %s, "inproc_ms": %s}\n' % (labels, json.dumps(ms))
        except Exception:
            out = json.dumps({"error": traceback.format_exc()}) + "\n"
        sys.stdout.write(out)
        sys.stdout.flush()


main()
