"""Where a chat request's time goes inside the local server under concurrent load (diagnostic).

    python bench/server_breakdown.py                                  # N=1024 L=50 ms C=32, hey
    python bench/server_breakdown.py --latency-ms 100 --concurrency 16 --n 512

Serves the server through bench/_hl_server_instrumented.py (the shipped ``main()`` with in-memory
timing wrappers; ``--server proto0`` binds as before 7474105), loads POST /v4/chat with
``hey`` (N requests over C connections), then prints, per phase, the mean / p50 / p90 / p99 / max
in milliseconds:

* ``client observed``  hey's per-request latency (average; p50/p99 from hey's histogram);
* ``asgi``             from the ASGI app being called until the response is sent;
* ``before_handler``   ASGI start -> ``routes_chat._complete`` starts (body read, JSON + pydantic
                       validation, dependencies; on the event loop);
* ``handler``          the call (resolve config, provider, logs, JSON response), on the event loop;
* ``provider_sleep``   the mock provider's awaited latency (L) and its answer;
* ``write_wait``       a call's logs handed to the group writer until committed (queue + batch);
* ``lock_wait``        per batch of calls: waiting until ``Store.write``'s transaction is open
                       (an in-process lock, then ``BEGIN IMMEDIATE``);
* ``txn_rest``         per batch: the rest of the write transaction (inserts + COMMIT);
* ``after_handler``    route returned -> response sent by the event loop.

``client observed - asgi`` is time outside the app: TCP, h11 parsing, event-loop scheduling and,
with ``proto0``, the delayed-ACK stall. The ratio line compares the mean client-observed
latency with L.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time

import _common as c


def stats(values: list[float]) -> list[float]:
    if not values:
        return [float("nan")] * 5
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return [1000 * sum(ordered) / len(ordered), 1000 * pct(0.5), 1000 * pct(0.9), 1000 * pct(0.99), 1000 * ordered[-1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_load_options(parser, n=1024, latency_ms=50.0, concurrency=32)
    c.add_server_option(parser)
    args = parser.parse_args()
    c.bounded(parser, args, n=20000, concurrency=256)
    if not shutil.which("hey"):
        parser.error("needs hey (apt-get install hey)")
    c.header("server-side breakdown of a chat request under load")
    for variant in c.server_variants(args.server):
        server = c.server_process(c.hl_server_command(args.latency_ms, ["--proto0"] if variant == "proto0" else [],
                                                      launcher=c.BENCH_DIR / "_hl_server_instrumented.py",
                                                      name="breakdown"))
        with server:
            c.use_server(server.base_url)
            _, bodies = c.specs_and_bodies(1, server.base_url)
            c.bare_pool(bodies * 4, server.base_url + "/chat", 4)  # warm-up (counted below, 4 requests)
            cpu0 = c.cpu_seconds(server.pid)
            result = c.load_hey(server.base_url + "/chat", bodies[0], args.n, args.concurrency)
            cpu = c.cpu_seconds(server.pid) - cpu0
        deadline = time.monotonic() + 10
        while not any(line.startswith("BREAKDOWN ") for line in server.output) and time.monotonic() < deadline:
            time.sleep(0.05)
        line = next(line for line in server.output if line.startswith("BREAKDOWN "))
        phases = json.loads(line[len("BREAKDOWN "):])
        ideal = -(-result["n"] // args.concurrency) * args.latency_ms / 1000
        vs_ideal = f" = {result['wall'] / ideal:.3f}x ideal" if ideal else ""
        print(f"\n# server: {variant}; hey N={result['n']} C={args.concurrency} L={args.latency_ms:g} ms: "
              f"wall {result['wall']:.3f} s{vs_ideal}, {result['rps']:.0f} req/s, "
              f"server CPU {1000 * cpu / result['n']:.2f} ms/req ({cpu / result['wall']:.2f} cores)")
        rows = [["client observed (hey)", 1000 * result["avg"], 1000 * result["p50"], float("nan"),
                 1000 * result["p99"], float("nan"), result["n"]]]
        for name, values in phases.items():
            rows.append([name, *stats(values), len(values)])
        print(c.table(["phase", "mean ms", "p50", "p90", "p99", "max", "count"], rows))
        mean = {name: stats(values)[0] for name, values in phases.items()}
        vs_l = f" = {1000 * result['avg'] / args.latency_ms:.2f}x L" if args.latency_ms else ""
        print(f"mean client latency {1000 * result['avg']:.1f} ms{vs_l}; "
              f"outside the app {1000 * result['avg'] - mean['asgi']:.1f} ms, before handler "
              f"{mean['before_handler']:.1f}, waiting for the group commit {mean['write_wait']:.1f}, after handler "
              f"{mean['after_handler']:.1f}, handler minus provider/commit "
              f"{mean['handler'] - mean['provider_sleep'] - mean['write_wait']:.1f}")


if __name__ == "__main__":
    main()
