"""A team server's throughput: 1, 2 and 4 workers on PostgreSQL vs the one-process SQLite server.

    python bench/team_throughput.py                              # N=2000 C=16, hey, 2 repetitions
    python bench/team_throughput.py --n 5000 --concurrency 50 --repeat 2 --latency-ms 50

Each server is ``python -m hl_notebook.server`` (mock provider) on 127.0.0.1, loaded one at a time
by the same client (``hey``; a Python pool without it), repetitions interleaved. PostgreSQL runs in
a private cluster started here (``tests/postgres.py``: initdb + pg_ctl in a temp dir, fsync off as
in the tests). Ratio = requests/s / the SQLite server's requests/s in the same run. CPU per
request is the server's processes (supervisor and workers) and, apart, PostgreSQL's.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import _common as c

sys.path.insert(0, str(c.ROOT / "tests"))
import postgres  # noqa: E402


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (a supervisor's workers)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return c.cpu_seconds(pid) + sum(c.cpu_seconds(int(child)) for child in children)


def postgres_cpu_seconds(cluster: postgres.Cluster) -> float:
    found = subprocess.run(["pgrep", "-f", f"postgres.*{cluster.data}|postgres: "], capture_output=True,
                           text=True).stdout.split()
    total = 0.0
    for pid in found:
        try:
            total += c.cpu_seconds(int(pid))
        except (OSError, ValueError):
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per load run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the mock provider's latency per call")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run on PostgreSQL")
    parser.add_argument("--client", choices=("hey", "python"), default="hey" if shutil.which("hey") else "python")
    args = parser.parse_args()
    c.bounded(parser, args, n=50000, repeat=10, concurrency=256)
    c.header("team server: workers on PostgreSQL vs the one-process SQLite server")
    load = c.load_hey if args.client == "hey" else c.load_python
    cluster = postgres.Cluster()
    servers = {"sqlite 1 worker": c.hl_server(args.latency_ms)}
    for count in (int(w) for w in args.workers.split(",")):
        database = postgres.create_database(f"bench_{count}", cluster.url())
        command = c.local_server_command(database, c.API_KEY, ["--mock-latency-ms", str(args.latency_ms),
                                                               "--workers", str(count)])
        servers[f"postgresql {count} worker{'s' * (count > 1)}"] = c.server_process(command)
    rows, rps = [], {name: [] for name in servers}
    try:
        for server in servers.values():
            server.start()
        c.use_server(servers["sqlite 1 worker"].base_url)
        _, bodies = c.specs_and_bodies(1, servers["sqlite 1 worker"].base_url)
        for server in servers.values():  # warm-up: every worker's connections, the project and config rows
            load(server.base_url + "/chat", bodies[0], min(400, args.n), args.concurrency)
        for rep in range(args.repeat):
            for name, server in servers.items():
                cpu0, pg0 = tree_cpu_seconds(server.pid), postgres_cpu_seconds(cluster)
                result = load(server.base_url + "/chat", bodies[0], args.n, args.concurrency)
                cpu = tree_cpu_seconds(server.pid) - cpu0
                pg = postgres_cpu_seconds(cluster) - pg0
                rps[name].append(result["rps"])
                rows.append([rep + 1, name, result["n"], result["ok"], result["wall"], result["rps"],
                             1000 * result["p50"], 1000 * result["p99"], 1000 * cpu / result["n"],
                             1000 * pg / result["n"]])
        print(c.table(["rep", "server", "n", "200s", "wall s", "req/s", "p50 ms", "p99 ms", "server cpu ms/req",
                       "postgres cpu ms/req"], rows))
        base = c.median(rps["sqlite 1 worker"])
        print()
        print(c.table(["server", "median req/s", "/ sqlite 1 worker"],
                      [[name, c.median(values), c.median(values) / base] for name, values in rps.items()]))
    finally:
        for server in servers.values():
            server.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
