"""Sweep wall time vs the ideal ceil(N/C)·L, against a server process with simulated latency.

    python bench/sweep_walltime.py                                   # small: N=160 L=100 C=16
    python bench/sweep_walltime.py --n 500 --latency-ms 100 --concurrency 16 --repeat 3
    python bench/sweep_walltime.py --n 1000 --latency-ms 50 --concurrency 32 --repeat 3

Each repetition runs, against the same ``python -m hl_notebook.server --mock-latency-ms L``:
``hl_notebook.sweep`` (N input rows, concurrency C, frame and history included) and, as a
same-command baseline, a bare thread pool of C ``requests.Session`` s POSTing the same N bodies.
Ratios: wall / ideal for both, and hl / bare. ``max_in_flight`` is the server's own count of
concurrent chat requests; ``post s`` is the part of the sweep spent after the last response
(``to_frame`` + ``archive.record``), measured by wrapping those two functions in this process;
``srv cpu ms/req`` and ``srv cores`` are the server process's CPU time (from /proc) per request
and per second of wall time; ``client cores`` the same for this (client) process. ``--server nodelay`` runs the what-if server variant (see _common).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import _common as c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=160, help="requests per sweep")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="server --mock-latency-ms")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2, help="repetitions (hl and bare alternate)")
    parser.add_argument("--target", type=float, default=1.15, help="ratio to ideal that passes")
    parser.add_argument("--server-arg", action="append", default=[], help="extra server argument")
    c.add_server_option(parser)
    args = parser.parse_args()
    if not (1 <= args.n <= 20000 and 1 <= args.repeat <= 20):
        parser.error("bounded loads only: --n 1..20000, --repeat 1..20")
    c.header("sweep wall time vs ideal ceil(N/C)*L")
    ideal = math.ceil(args.n / args.concurrency) * args.latency_ms / 1000

    import hl_notebook.archive
    import hl_notebook.runner

    post = {"s": 0.0}

    def wrap(module, name):  # noqa: ANN001, ANN202 - times a library function in place
        original = getattr(module, name)

        def timed(*a, **k):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                post["s"] += time.perf_counter() - start
        setattr(module, name, timed)

    wrap(hl_notebook.runner, "to_frame")
    wrap(hl_notebook.archive, "record")

    rows = []
    with c.hl_server(args.latency_ms, args.server_arg, args.server) as server:
        c.use_server(server.base_url)
        _, bodies = c.specs_and_bodies(args.n, server.base_url)
        url = server.base_url + "/chat"
        c.hl_sweep(min(args.n, args.concurrency), args.concurrency, server.base_url)  # warm-up
        c.bare_pool(bodies[: args.concurrency], url, args.concurrency)
        for rep in range(args.repeat):
            for kind in ("hl sweep", "bare requests pool"):
                c.server_stats(server.base_url, reset=True)
                post["s"] = 0.0
                cpu0, own0 = c.cpu_seconds(server.pid), c.cpu_seconds(os.getpid())
                if kind == "hl sweep":
                    wall, frame = c.timed(lambda: c.hl_sweep(args.n, args.concurrency, server.base_url))
                    failed = int(frame["error"].notna().sum())
                    assert len(frame) == args.n, len(frame)
                else:
                    wall, statuses = c.timed(lambda: c.bare_pool(bodies, url, args.concurrency))
                    failed = sum(s != 200 for s in statuses)
                cpu, own = c.cpu_seconds(server.pid) - cpu0, c.cpu_seconds(os.getpid()) - own0
                stats = c.server_stats(server.base_url)
                rows.append([rep + 1, kind, wall, wall / ideal, stats["max_in_flight"], stats["requests"],
                             failed, post["s"] if kind == "hl sweep" else 0.0,
                             1000 * cpu / max(stats["requests"], 1), cpu / wall, own / wall])
    print(f"# server: {args.server}; N={args.n} L={args.latency_ms:g} ms C={args.concurrency}: "
          f"ideal ceil(N/C)*L = {ideal:.3f} s")
    print(c.table(["rep", "client", "wall s", "x ideal", "max_in_flight", "server reqs", "failed", "post s",
                   "srv cpu ms/req", "srv cores", "client cores"], rows))
    hl = [r[2] for r in rows if r[1] == "hl sweep"]
    bare = [r[2] for r in rows if r[1] != "hl sweep"]
    best = min(hl) / ideal
    print(f"hl sweep: median {c.median(hl) / ideal:.3f}x ideal, best {best:.3f}x "
          f"(target {args.target:g}x: {c.verdict(best, args.target)}); bare pool: median "
          f"{c.median(bare) / ideal:.3f}x ideal; hl / bare (median) = {c.median(hl) / c.median(bare):.3f}")


if __name__ == "__main__":
    main()
