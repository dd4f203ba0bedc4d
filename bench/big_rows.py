"""1 M rows through sluice vs pandas unsandboxed, on one backend, in one run.

Driven by bench/big_rows.sh (read its header first). Two sub-commands:

  big_rows.py load BACKEND DB TABLE
      Create the 1 M-row table once (skipped when it already holds 1 M rows):
      id 0..999999, x and y from numpy default_rng(0), label 'hi' if x > 0.5
      else 'lo' (the data of bench-peers/make_big.py). DB is a file path for
      sqlite, a postgres:// or mysql:// URL otherwise.

  big_rows.py run BACKEND DB TABLE --server LABEL:PORT:KEY:PID ... \
      [--sizes 1000000 10000 150] [--rounds 3] [--jsonl FILE]
      For each size, ROUNDS rounds; each round runs, in an order rotated per
      round, one request to every sluice server and every pandas baseline.
      Prints a line per round, then a markdown table and memory lines.

A sluice time runs from before the HTTP request to the parsed JSON response
(status success, one prediction per row). A pandas baseline is read_sql +
exec(CODE) + classify(df) + json.dumps(list(labels)), in this process, with
no sandbox. Every driver is timed twice: "cold" opens its connection (or
SQLAlchemy engine) inside the timed part, as bench-peers/big_rows.py does
for SQLite; "warm" reuses one opened before the rounds (sluice keeps a
pool, so warm is the like-for-like one). The baseline the ratio uses is the
fastest median of all of them: the target is never flattered.
"""
import argparse
import collections
import http.client
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings

import numpy as np
import pandas as pd

N = 1_000_000
CODE = "def classify(df):\n    return (df['x'] + df['y'] > 1.0).map({True: 'a', False: 'b'})\n"

warnings.filterwarnings("ignore", message=".*pandas only supports SQLAlchemy.*")


# ---------------------------------------------------------------- data ----

def data():
    rng = np.random.default_rng(0)
    x, y = rng.random(N), rng.random(N)
    return x.tolist(), y.tolist(), np.where(x > 0.5, "hi", "lo").tolist()


def tsv_chunks(chunk=100_000):
    """The rows as tab-separated text; repr() of a float round-trips exactly."""
    x, y, lab = data()
    for s in range(0, N, chunk):
        yield "".join(f"{i}\t{x[i]!r}\t{y[i]!r}\t{lab[i]}\n" for i in range(s, min(s + chunk, N)))


def mysql_params(url):
    u = urllib.parse.urlparse(url)
    return dict(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=urllib.parse.unquote(u.username or "root"),
                password=urllib.parse.unquote(u.password or ""), database=u.path.lstrip("/"))


def load(backend, db, table):
    t0 = time.perf_counter()
    if backend == "sqlite":
        if os.path.exists(db):
            c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            n = c.execute(f"select count(*) from {table}").fetchone()[0]
            c.close()
            if n == N:
                return print(f"sqlite: {db} {table} has {n} rows, kept")
            os.remove(db)
        c = sqlite3.connect(db + ".tmp")
        c.execute(f"drop table if exists {table}")
        c.execute(f"create table {table}(id integer primary key, x real, y real, label text)")
        x, y, lab = data()
        c.executemany(f"insert into {table} values (?,?,?,?)", zip(range(N), x, y, lab))
        c.commit()
        c.close()
        os.rename(db + ".tmp", db)
    elif backend == "postgres":
        import psycopg
        with psycopg.connect(db) as c:
            n = c.execute(f"select case when to_regclass('{table}') is null then -1 else 0 end").fetchone()[0]
            if n == 0:
                n = c.execute(f"select count(*) from {table}").fetchone()[0]
            if n == N:
                return print(f"postgres: {table} has {n} rows, kept")
            c.execute(f"drop table if exists {table}")
            c.execute(f"create table {table}(id bigint primary key, x double precision, y double precision, label text)")
            with c.cursor().copy(f"copy {table} (id, x, y, label) from stdin") as cp:
                for text in tsv_chunks():
                    cp.write(text)
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(f"vacuum analyze {table}")
    elif backend == "mariadb":
        import pymysql
        c = pymysql.connect(**mysql_params(db), local_infile=True)
        cur = c.cursor()
        cur.execute("select count(*) from information_schema.tables where table_schema = database() and table_name = %s",
                    (table.split(".")[-1],))
        n = -1
        if cur.fetchone()[0]:
            cur.execute(f"select count(*) from {table}")
            n = cur.fetchone()[0]
        if n == N:
            return print(f"mariadb: {table} has {n} rows, kept")
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            for text in tsv_chunks():
                f.write(text)
        try:
            cur.execute(f"drop table if exists {table}")
            cur.execute(f"create table {table}(id BIGINT PRIMARY KEY, x DOUBLE, y DOUBLE, label VARCHAR(8))")
            cur.execute(f"load data local infile '{f.name}' into table {table} "
                        "fields terminated by '\\t' lines terminated by '\\n' (id, x, y, label)")
            c.commit()
            cur.execute(f"analyze table {table}")
            cur.fetchall()
        finally:
            os.remove(f.name)
        c.close()
    print(f"{backend}: loaded {N} rows into {table} in {time.perf_counter() - t0:.1f} s")


# ----------------------------------------------------------- baselines ----

def finish(df):
    """The classifier part every baseline shares: exec, classify, JSON."""
    ns = {}
    exec(CODE, ns)
    labels = ns["classify"](df)
    out = json.dumps(list(labels))
    return labels, out


def baselines(backend, db):
    """name -> (run(sql) -> (labels, df), close()). Cold ones connect inside run()."""
    b = {}
    if backend == "sqlite":
        def sq_cold(sql):
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return pd.read_sql(sql, con)
            finally:
                con.close()
        warm = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        b["sqlite3"] = sq_cold
        b["sqlite3-warm"] = lambda sql: pd.read_sql(sql, warm)
    elif backend == "postgres":
        import psycopg
        import sqlalchemy as sa

        def pg3_cold(sql):
            with psycopg.connect(db) as con:
                return pd.read_sql(sql, con)
        pg3 = psycopg.connect(db, autocommit=True)
        sa_url = "postgresql+psycopg2://" + db.split("://", 1)[1]

        eng = sa.create_engine(sa_url)
        b["psycopg3"] = pg3_cold
        b["psycopg3-warm"] = lambda sql: pd.read_sql(sql, pg3)
        b["sa+psycopg2"] = lambda sql: _sa_cold(sa_url, sa, sql)
        b["sa+psycopg2-warm"] = lambda sql: _sa_warm(eng, sa, sql)
    elif backend == "mariadb":
        import sqlalchemy as sa
        rest = db.split("://", 1)[1]
        drivers = [("sa+pymysql", "mysql+pymysql://")]
        try:
            import MySQLdb  # noqa: F401
            drivers.append(("sa+mysqldb", "mysql+mysqldb://"))
        except ImportError:
            print("note: mysqlclient (MySQLdb) is not installed: no sa+mysqldb baseline", flush=True)
        for name, scheme in drivers:
            url = scheme + rest
            e = sa.create_engine(url)
            b[name] = lambda sql, url=url: _sa_cold(url, sa, sql)
            b[name + "-warm"] = lambda sql, e=e: _sa_warm(e, sa, sql)
    return b


def _sa_cold(url, sa, sql):
    """A fresh engine and connection inside the timed part."""
    eng = sa.create_engine(url)
    try:
        return _sa_warm(eng, sa, sql)
    finally:
        eng.dispose()


def _sa_warm(eng, sa, sql):
    with eng.connect() as con:
        return pd.read_sql(sa.text(sql), con)


# -------------------------------------------------------------- sluice ----

def sluice(port, key, sql):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"sql_query": sql, "classifier_code": CODE})
    t = time.perf_counter()
    c.request("POST", "/execute-classifier", body,
              {"Authorization": "Bearer " + key, "content-type": "application/json"})
    r = json.loads(c.getresponse().read())
    dt = time.perf_counter() - t
    c.close()
    return dt, r


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_hwm(pid):
    """Reset VmHWM to the current RSS (clear_refs 5, Linux >= 4.0, needs ptrace rights)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def descendants(root):
    kids = collections.defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids[ppid].append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


class TreeSampler(threading.Thread):
    """Every 50 ms: sum of VmRSS over the server and its descendants (zygote,
    request child), and the largest VmHWM seen in a descendant. Only used on
    an extra, untimed request, so it cannot slow the timed ones."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak_sum, self.child_hwm = pid, threading.Event(), 0, 0

    def run(self):
        while not self.stop.is_set():
            tree = descendants(self.pid)
            self.peak_sum = max(self.peak_sum, sum(status_kb(p, "VmRSS") or 0 for p in tree))
            for p in tree[1:]:
                self.child_hwm = max(self.child_hwm, status_kb(p, "VmHWM") or 0)
            self.stop.wait(0.05)


# ----------------------------------------------------------------- run ----

def med(xs):
    return statistics.median(xs) if xs else None


def fmt(v, nd=0):
    return "–" if v is None else f"{v:.{nd}f}"


def run(a):
    servers = []
    for s in a.server:
        label, port, key, pid = s.rsplit(":", 3)
        servers.append(dict(label=label, port=int(port), key=key, pid=int(pid)))
    base = baselines(a.backend, a.db)
    items = [("sluice", s["label"]) for s in servers] + [("pandas", n) for n in base]
    jsonl = open(a.jsonl, "a") if a.jsonl else None

    def record(rec):
        rec.update(backend=a.backend, ts=time.time())
        if jsonl:
            jsonl.write(json.dumps(rec) + "\n")
            jsonl.flush()

    def query(n):
        q = f"SELECT id, x, y, label FROM {a.table}"
        return q if n >= N else f"{q} WHERE id < {n}"

    def one(kind, name, n, sql):
        """Run one item; returns (seconds, timings_ms or None, labels for the check)."""
        if kind == "sluice":
            s = next(s for s in servers if s["label"] == name)
            dt, r = sluice(s["port"], s["key"], sql)
            preds = r.get("predictions") or []
            if r.get("status") != "success" or len(preds) != n:
                raise SystemExit(f"{a.backend} sluice {name} n={n}: status {r.get('status')} "
                                 f"{len(preds)} predictions, error {json.dumps(r.get('error'))[:500]}")
            return dt, r.get("timings_ms"), preds
        t = time.perf_counter()
        df = base[name](sql)
        labels, _ = finish(df)
        dt = time.perf_counter() - t
        if len(labels) != n:
            raise SystemExit(f"{a.backend} {name} n={n}: {len(labels)} labels")
        return dt, None, labels

    # Warm-up, untimed: imports, pools, sluice's zygote, on the smallest size.
    small = min(a.sizes)
    for kind, name in items:
        one(kind, name, small, query(small))

    times = collections.defaultdict(list)   # (size, name) -> [ms]
    tms = collections.defaultdict(list)     # (size, label) -> [timings_ms]
    mem = {s["label"]: dict(idle=[], peak=[], hwm_reset=None) for s in servers}
    arrow_mb = None
    for n in a.sizes:
        sql = query(n)
        checked = None
        for r in range(a.rounds):
            order = items[r % len(items):] + items[:r % len(items)]
            parts = []
            for kind, name in order:
                s = next((s for s in servers if s["label"] == name), None) if kind == "sluice" else None
                if s and n >= N:
                    mem[name]["idle"].append(status_kb(s["pid"], "VmRSS"))
                    mem[name]["hwm_reset"] = reset_hwm(s["pid"])
                dt, timings, labels = one(kind, name, n, sql)
                rec = dict(size=n, round=r, kind=kind, name=name, ms=dt * 1000, timings_ms=timings)
                if s and n >= N:
                    mem[name]["peak"].append(status_kb(s["pid"], "VmHWM"))
                    rec.update(idle_rss_kb=mem[name]["idle"][-1], peak_hwm_kb=mem[name]["peak"][-1])
                record(rec)
                times[(n, name)].append(dt * 1000)
                if timings:
                    tms[(n, name)].append(timings)
                if r == 0:  # the labels must agree between every item
                    c = collections.Counter(map(str, labels))
                    if checked is None:
                        checked = c
                    elif c != checked:
                        raise SystemExit(f"{a.backend} n={n}: {name} label counts {dict(c)} != {dict(checked)}")
                if kind == "pandas" and n >= N and arrow_mb is None and name == next(iter(base)):
                    import pyarrow as pa
                    arrow_mb = pa.Table.from_pandas(base[name](sql)).nbytes / 2**20
                extra = f" {timings}" if timings else ""
                parts.append(f"{name} {dt * 1000:.0f} ms{extra}")
                del labels
            print(f"[{a.backend}] rows={n} round {r}: " + " | ".join(parts), flush=True)
        if n >= N:
            time.sleep(2)
            for s in servers:
                mem[s["label"]]["after"] = status_kb(s["pid"], "VmRSS")
    # One more 1 M request per server, untimed, with the process-tree sampler on.
    if N in a.sizes and a.tree_mem:
        for s in servers:
            ts = TreeSampler(s["pid"])
            ts.start()
            one("sluice", s["label"], N, query(N))
            ts.stop.set()
            ts.join()
            mem[s["label"]].update(tree_peak_kb=ts.peak_sum, child_hwm_kb=ts.child_hwm)

    # ------------------------------------------------------------ report
    labels = [s["label"] for s in servers]
    bnames = list(base)
    print(f"\n### {a.backend}: {a.rounds} rounds, medians in ms "
          f"(cold = connection/engine opened inside the timed part, warm = reused; "
          f"baseline = fastest pandas median)\n")
    head = (["rows"] + [f"sluice {l}" for l in labels] + [f"pandas {b}" for b in bnames] + ["baseline"]
            + [f"{l} / baseline" for l in labels] + [f"{l} sql / sandbox" for l in labels])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    summary = []
    for n in a.sizes:
        bmed = {b: med(times[(n, b)]) for b in bnames}
        best = min(bmed, key=lambda b: bmed[b])
        row = [f"{n:,}"] + [fmt(med(times[(n, l)])) for l in labels] + [fmt(bmed[b]) for b in bnames]
        row.append(f"{best}")
        row += [f"{med(times[(n, l)]) / bmed[best]:.2f}" for l in labels]
        for l in labels:
            t = tms[(n, l)]
            row.append(f"{fmt(med([x.get('sql') for x in t if x.get('sql') is not None]))} / "
                       f"{fmt(med([x.get('sandbox') for x in t if x.get('sandbox') is not None]))}")
        print("| " + " | ".join(row) + " |")
        summary.append(dict(size=n, sluice_ms={l: med(times[(n, l)]) for l in labels}, pandas_ms=bmed,
                            baseline=best, ratio={l: med(times[(n, l)]) / bmed[best] for l in labels}))
    if N in a.sizes:
        print()
        for l in labels:
            m = mem[l]
            idle, peak = med(m["idle"]) / 1024, med(m["peak"]) / 1024
            after = m.get("after", 0) / 1024
            line = (f"memory {a.backend} {l} (server process): idle RSS {idle:.0f} MB, peak HWM {peak:.0f} MB, "
                    f"peak-idle {peak - idle:.0f} MB, RSS 2 s after {after:.0f} MB, Arrow size of the 1 M rows "
                    f"{arrow_mb:.1f} MB, (peak-idle)/Arrow {(peak - idle) / arrow_mb:.2f}"
                    f"{'' if m['hwm_reset'] else ' (HWM not reset between requests: cumulative)'}")
            if "tree_peak_kb" in m:
                line += (f"; extra untimed request, 50 ms samples: server+zygote+child RSS sum peak "
                         f"{m['tree_peak_kb'] / 1024:.0f} MB, largest child VmHWM {m['child_hwm_kb'] / 1024:.0f} MB")
            print(line)
            summary.append(dict(memory=l, idle_mb=idle, peak_mb=peak, after_mb=after, arrow_mb=arrow_mb,
                                tree_peak_mb=m.get("tree_peak_kb", 0) / 1024,
                                child_hwm_mb=m.get("child_hwm_kb", 0) / 1024))
    record(dict(kind="summary", rounds=a.rounds, summary=summary))
    print(flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load")
    rp = sub.add_parser("run")
    for q in (lp, rp):
        q.add_argument("backend", choices=["sqlite", "postgres", "mariadb"])
        q.add_argument("db", help="SQLite file path, or postgres:// / mysql:// URL")
        q.add_argument("table")
    rp.add_argument("--server", action="append", default=[], help="LABEL:PORT:KEY:PID (repeat)")
    rp.add_argument("--sizes", type=int, nargs="+", default=[N, 10_000, 150])
    rp.add_argument("--rounds", type=int, default=3)
    rp.add_argument("--jsonl")
    rp.add_argument("--no-tree-mem", dest="tree_mem", action="store_false")
    a = p.parse_args()
    if a.cmd == "load":
        load(a.backend, a.db, a.table)
    else:
        run(a)


if __name__ == "__main__":
    sys.exit(main())
