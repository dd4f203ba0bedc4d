"""CPU per request, split by process: the sluice server, its zygotes (the
forks) and the children they reaped, around N sequential trivial requests
to a running server (README "Where the CPU goes").

    python3 bench/cpu_per_request.py --base http://127.0.0.1:8080 --key sluice_... [--n 300] [--policy P]

Run it on an otherwise idle machine; compare figures from one run only.
The server's pid is found from the port it listens on (needs to run as the
server's user or root, to read its /proc entries). Children still waiting
in a pool at the end are not counted yet: use a large N.
"""

import argparse
import json
import os
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
CODE = "def classify(df):\n    return (df['petal_width'] > 1.0).map({True: 'wide', False: 'narrow'})\n"


def stat(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def cpu_s(pid, children):
    """utime + stime (and the reaped children's) of `pid`, in seconds."""
    f = stat(pid)
    own = int(f[11]) + int(f[12])
    return (int(f[13]) + int(f[14]) if children else own) / TICK


def server_pid(port):
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"no process listens on port {port} (run as the server's user or root)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--policy")
    a = ap.parse_args()
    headers = {"Authorization": "Bearer " + a.key, "Content-Type": "application/json"}
    body = {"sql_query": "SELECT * FROM iris", "classifier_code": CODE}
    if a.policy:
        body["policy"] = a.policy
    data = json.dumps(body).encode()

    def request():
        r = urllib.request.Request(a.base + "/execute-classifier", data=data, headers=headers)
        t = time.perf_counter()
        v = json.load(urllib.request.urlopen(r))
        assert v["status"] == "success", v
        return (time.perf_counter() - t) * 1000

    ready = json.load(urllib.request.urlopen(urllib.request.Request(a.base + "/readyz", headers=headers)))
    zygotes = [e["zygote"]["pid"] for e in ready["environments"].values() if e.get("zygote")]
    server = server_pid(int(a.base.rsplit(":", 1)[1].split("/")[0]))
    for _ in range(5):
        request()
    time.sleep(1)

    def parts():
        return (
            cpu_s(server, False),
            sum(cpu_s(z, False) for z in zygotes),
            sum(cpu_s(z, True) for z in zygotes),
        )

    before, client0, t0 = parts(), time.process_time(), time.perf_counter()
    lat = sorted(request() for _ in range(a.n))
    wall = time.perf_counter() - t0
    time.sleep(1.5)  # the last children are reaped
    after, client1 = parts(), time.process_time()
    server_ms, zygote_ms, children_ms = (1000 * (y - x) / a.n for x, y in zip(before, after))
    print(
        f"{a.n} requests: p50 {lat[a.n // 2]:.1f} ms, p95 {lat[int(a.n * 0.95)]:.1f} ms, "
        f"{1000 * wall / a.n:.1f} ms of wall time each"
    )
    print(
        f"CPU per request: server {server_ms:.1f} ms, zygote {zygote_ms:.1f} ms, children {children_ms:.1f} ms, "
        f"total {server_ms + zygote_ms + children_ms:.1f} ms; this client {1000 * (client1 - client0) / a.n:.1f} ms"
    )


if __name__ == "__main__":
    main()
