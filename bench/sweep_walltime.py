"""Sweep wall time vs the ideal ceil(N/C)·L, against a server process with simulated latency.

    python bench/sweep_walltime.py                                   # small: N=160 L=100 C=16
    python bench/sweep_walltime.py --n 500 --latency-ms 100 --concurrency 16 --repeat 3
    python bench/sweep_walltime.py --n 1000 --latency-ms 50 --concurrency 32 --repeat 3 --target 1.10
    python bench/sweep_walltime.py --n 1000 --latency-ms 50 --concurrency 32 --repeat 3 --target 1.10 --pin

Each repetition runs, against the same ``python -m hl_notebook.server --mock-latency-ms L``:
``hl_notebook.sweep`` (N input rows, concurrency C, frame and history included) and, as
same-command baselines, a bare thread pool of C ``requests.Session`` s POSTing the same N bodies,
the same pool over the standard library's ``http.client`` (the cost of requests' layers), that pool
sending a fresh ``Idempotency-Key`` per request as the sweep does (``+ key``: the server's cost of
the key included, so hl / keyed is the client's own overhead), the same keyed calls from one
thread multiplexing C connections (``asyncio pool + key``: what a client without a thread per call
in flight gets) and ``hey`` (a Go load generator,
when installed: the server's own limit with a near-free client).
Ratios: wall / ideal for each, and hl / bare. ``--server both`` repeats the whole run against the
``proto0`` what-if variant (the pre-7474105 socket binding; see _common.hl_server);
``--server embedded`` measures instead the in-process server a notebook gets when none is set, and
``--server minimal`` a minimal FastAPI app that only waits L before its canned answer (no store,
no key handling): the client's own share of the ratio.

Columns: ``max_in_flight`` is the server's own count of concurrent chat requests; ``post s`` the
part of the sweep spent after the last response on its thread (``to_frame`` + handing the frame
to the history's thread, ``archive.record_later``, timed by wrapping those two functions in this
process); ``history s`` the wait after the sweep returned until its history record was written
(``archive.settle``, not in ``wall s``: the sweep returns its frame first); ``srv cpu ms/req`` and ``srv cores`` the server
process's CPU time (from /proc) per request and per second of wall time; ``client cores`` the
same for this (client) process. The verdict is on the median hl sweep ratio. ``--pin`` keeps the
server process on one CPU and this process (its threads, and ``hey``) on another, for every client
alike: on two shared cores the scheduler otherwise sometimes puts them on one.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil

import _common as c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_load_options(parser, n=(160, "requests per sweep"), latency_ms=(100.0, "server --mock-latency-ms"),
                       concurrency=16, repeat=(2, "repetitions (hl and bare alternate)"),
                       target=(1.15, "ratio to ideal that passes (issue 15's 1,000 x C=32 sweep: --target 1.10)"))
    parser.add_argument("--server-arg", action="append", default=[], help="extra server argument")
    parser.add_argument("--pin", action="store_true",
                        help="server process on one CPU, this client (and hey) on another (_common.pin_apart)")
    parser.add_argument("--no-hey", dest="hey", action="store_false", default=bool(shutil.which("hey")),
                        help="skip the hey (Go) baseline (default: run it when hey is installed)")
    parser.add_argument("--server", choices=(*c.SERVER_VARIANTS, "both", "embedded", "minimal"), default="shipped",
                        help="shipped (default) / proto0 / both server processes, or embedded: "
                             "hl_notebook's in-process default server (no HUMANLOOP_BASE_URL), or minimal: "
                             "a minimal FastAPI app that only waits L (the client alone)")
    args = parser.parse_args()
    c.bounded(parser, args, n=20000, repeat=20)
    if args.pin and args.server == "embedded":
        parser.error("--pin needs the server in its own process (not --server embedded)")
    c.header("sweep wall time vs ideal ceil(N/C)*L")
    ideal = math.ceil(args.n / args.concurrency) * args.latency_ms / 1000

    post = c.PostTimer()
    kinds = ["hl sweep", "bare requests pool", "http.client pool", "http.client pool + key",
             "asyncio pool + key"] + \
        (["hey (Go)"] if args.hey else [])
    summary = []
    variants = [args.server] if args.server in ("embedded", "minimal") else c.server_variants(args.server)
    for variant in variants:
        rows = []
        with contextlib.ExitStack() as stack:
            if variant == "embedded":  # in this process: server and client share one interpreter
                base_url, key = c.use_embedded(args.latency_ms)
                pid = os.getpid()
            else:
                server = stack.enter_context(c.minimal_server(latency_ms=args.latency_ms) if variant == "minimal"
                                             else c.hl_server(args.latency_ms, args.server_arg, variant))
                c.use_server(server.base_url)
                base_url, key, pid = server.base_url, c.API_KEY, server.pid
            pinned = c.pin_apart(pid) if args.pin else "not pinned"
            sweep_url = None if variant == "embedded" else base_url
            _, bodies = c.specs_and_bodies(args.n, sweep_url)
            url = base_url + "/chat"
            c.hl_sweep(min(args.n, args.concurrency), args.concurrency, sweep_url)  # warm-up
            c.bare_pool(bodies[: args.concurrency], url, args.concurrency, key)
            for rep in range(args.repeat):
                for kind in kinds:
                    if args.pin:
                        c.pin_apart(pid)
                    if variant != "minimal":  # (the minimal app keeps no statistics)
                        c.server_stats(base_url, reset=True, key=key)
                    post.reset()
                    cpu0, own0 = c.cpu_seconds(pid), c.cpu_seconds(os.getpid())
                    n = args.n
                    if kind == "hl sweep":
                        wall, frame = c.timed(lambda: c.hl_sweep(args.n, args.concurrency, sweep_url))
                        history = c.history_settle()
                        failed = int(frame["error"].notna().sum())
                        assert len(frame) == args.n, len(frame)
                    elif kind == "bare requests pool":
                        wall, statuses = c.timed(lambda: c.bare_pool(bodies, url, args.concurrency, key))
                        failed = sum(s != 200 for s in statuses)
                    elif kind.startswith("http.client pool"):
                        keyed = kind.endswith("+ key")
                        wall, statuses = c.timed(lambda: c.stdlib_pool(bodies, url, args.concurrency, key, keyed))
                        failed = sum(s != 200 for s in statuses)
                    elif kind == "asyncio pool + key":
                        wall, statuses = c.timed(lambda: c.asyncio_pool(bodies, url, args.concurrency, key))
                        failed = sum(s != 200 for s in statuses)
                    else:  # hey runs n // C requests per connection: compare with its own ideal
                        result = c.load_hey(url, bodies[0], args.n, args.concurrency, key=key)
                        wall, n, failed = result["wall"], result["n"], result["n"] - result["ok"]
                    cpu, own = c.cpu_seconds(pid) - cpu0, c.cpu_seconds(os.getpid()) - own0
                    stats = c.server_stats(base_url, key=key) if variant != "minimal" else \
                        {"max_in_flight": float("nan"), "requests": n}
                    ideal_n = math.ceil(n / args.concurrency) * args.latency_ms / 1000
                    same = variant == "embedded"
                    rows.append([rep + 1, kind, n, wall, wall / ideal_n, stats["max_in_flight"], failed,
                                 post.total if kind == "hl sweep" else 0.0,
                                 history if kind == "hl sweep" else 0.0,
                                 1000 * cpu / max(stats["requests"], 1) if not same else float("nan"),
                                 cpu / wall if not same else float("nan"),
                                 own / wall if kind != "hey (Go)" else float("nan")])
        print(f"\n# server: {variant}; N={args.n} L={args.latency_ms:g} ms C={args.concurrency}: "
              f"ideal ceil(N/C)*L = {ideal:.3f} s; {pinned}")
        print(c.table(["rep", "client", "n", "wall s", "x ideal", "max_in_flight", "failed", "post s", "history s",
                       "srv cpu ms/req", "srv cores", "client cores"], rows))
        ratio = {k: c.median(r[4] for r in rows if r[1] == k) for k in kinds}
        walls = {k: c.median(r[3] for r in rows if r[1] == k) for k in kinds}
        summary.append([variant, *(ratio[k] for k in kinds), walls["hl sweep"] / walls["bare requests pool"],
                        walls["hl sweep"] / walls["http.client pool + key"],
                        args.target, c.verdict(ratio["hl sweep"], args.target)])
    print("\n# medians: wall / ideal per client; hl / bare = hl sweep wall / bare pool wall; "
          "hl / keyed = hl sweep wall / http.client pool + key wall")
    print(c.table(["server", *(f"{k} x ideal" for k in kinds), "hl / bare", "hl / keyed", "target", "hl verdict"],
                  summary))

if __name__ == "__main__":
    main()
