"""Local server throughput (mock provider, zero latency, POST /v4/chat) vs a minimal FastAPI app.

    python bench/server_throughput.py                          # N=1000 C=16, hey, 2 repetitions
    python bench/server_throughput.py --n 4000 --concurrency 32 --repeat 3
    python bench/server_throughput.py --client python          # load from a requests thread pool

Servers, all uvicorn in one process each, on 127.0.0.1, loaded one at a time by the same client
(``hey`` by default: a Go load generator, so the client's own CPU cost stays small on 2 cores):

* ``minimal``     bench/_minimal_app.py: one sync POST route parsing the JSON body and returning a
                  canned 1.7 kB ChatResponse; socket bound as uvicorn/asyncio normally do it.
* ``hl shipped``  ``python -m hl_notebook.server --mock-latency-ms 0`` exactly as shipped.
* ``hl proto0``   (``--all``) the same main() bound as before commit 7474105 (bench/_hl_server_proto0.py).
* ``minimal proto0`` (``--all``) the minimal app bound that old way too.

Ratio = hl requests/s / minimal requests/s (median over repetitions; repetitions interleave the
servers). ``srv cpu ms/req`` is the server process's CPU time per request (from /proc).
"""
from __future__ import annotations

import argparse
import shutil

import _common as c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="requests per load run (hey: a multiple of C)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--client", choices=("hey", "python"), default="hey" if shutil.which("hey") else "python")
    parser.add_argument("--all", action="store_true", help="also both servers bound the pre-7474105 way (proto 0)")
    args = parser.parse_args()
    c.bounded(parser, args, n=50000, repeat=10, concurrency=256)
    c.header("server throughput: hl_notebook.server vs a minimal FastAPI app")
    load = c.load_hey if args.client == "hey" else c.load_python

    servers = {"minimal": c.minimal_server(), "hl shipped": c.hl_server(0.0, variant="shipped")}
    if args.all:
        servers["hl proto0"] = c.hl_server(0.0, variant="proto0")
        servers["minimal proto0"] = c.minimal_server(proto0=True)
    rows, rps = [], {name: [] for name in servers}
    try:
        for server in servers.values():
            server.start()
        c.use_server(servers["hl shipped"].base_url)
        _, bodies = c.specs_and_bodies(1, servers["hl shipped"].base_url)
        body = bodies[0]
        for name, server in servers.items():  # warm-up: threads, SQLite connections, project/config rows
            load(server.base_url + "/chat", body, min(200, args.n), args.concurrency)
        for rep in range(args.repeat):
            for name, server in servers.items():
                cpu0 = c.cpu_seconds(server.pid)
                result = load(server.base_url + "/chat", body, args.n, args.concurrency)
                cpu = c.cpu_seconds(server.pid) - cpu0
                rps[name].append(result["rps"])
                rows.append([rep + 1, name, result["n"], result["ok"], result["wall"], result["rps"],
                             1000 * result["p50"], 1000 * result["p99"], 1000 * cpu / result["n"],
                             cpu / result["wall"]])
                if result["errors"]:
                    print(f"# {name} errors: {result['errors']}")
    finally:
        for server in servers.values():
            server.stop()
    print(f"# client {args.client}; N={args.n} per run, concurrency {args.concurrency}")
    print(c.table(["rep", "server", "n", "200s", "wall s", "req/s", "p50 ms", "p99 ms", "srv cpu ms/req",
                   "srv cores"], rows))
    base = c.median(rps["minimal"])
    for name in servers:
        if name != "minimal":
            print(f"{name}: median {c.median(rps[name]):.0f} req/s = {c.median(rps[name]) / base:.3f}x minimal "
                  f"({base:.0f} req/s)")


if __name__ == "__main__":
    main()
