"""Per-request client overhead of hl_notebook vs a bare ``requests.Session`` loop, sequentially.

    python bench/client_overhead.py                       # N=40, 2 repetitions
    python bench/client_overhead.py --n 500 --repeat 5

Against one zero-latency server process (``--mock-latency-ms 0``), each repetition runs the same
N POST /v4/chat bodies one after another, in turn through:

* ``bare requests``     one ``requests.Session`` (same headers), ``post(json=body).json()`` in a loop;
* ``HLClient.chat``     the library's client (retries, error mapping) on the prepared bodies;
* ``execute``           ``hl_notebook.call.execute(connection, spec)``: body building, timing, CallResult;
* ``sweep(conc=1)``     ``hl_notebook.sweep(..., concurrency=1)``: specs, calls, DataFrame, history.

Ratio = time per request / bare time per request (median of repetitions; variants interleave, and
the order rotates between repetitions).
``client cpu us/req`` is this process's CPU time per request: the client's own cost, less noisy than
wall time on a shared machine. ``--server proto0`` / ``both`` use the what-if server bound as before
commit 7474105, where every kept-alive request waits ~40 ms for a delayed ACK (hiding the client).
"""
from __future__ import annotations

import argparse
import time

import _common as c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="requests per variant per repetition")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--target", type=float, default=1.3)
    c.add_server_option(parser)
    args = parser.parse_args()
    c.bounded(parser, args, n=10000, repeat=20)
    c.header("client overhead per request, sequential, zero-latency server")

    import requests

    from hl_notebook.call import execute
    from hl_notebook.connection import connect

    post = c.PostTimer()
    summary = []
    for variant in c.server_variants(args.server):
        with c.hl_server(0.0, variant=variant) as server:
            c.use_server(server.base_url)
            specs, bodies = c.specs_and_bodies(args.n, server.base_url)
            url = server.base_url + "/chat"
            connection = connect(server.base_url)
            client = connection.client
            session = requests.Session()
            session.headers.update(c.headers())

            def bare(k: int) -> None:
                for body in bodies[:k]:
                    session.post(url, json=body, timeout=(10, 300)).json()

            def hl_client(k: int) -> None:
                for spec, body in zip(specs[:k], bodies[:k]):
                    client.chat(spec.path, body)

            def hl_execute(k: int) -> None:
                for index, spec in enumerate(specs[:k]):
                    assert execute(connection, spec, index).ok

            def hl_sweep(k: int) -> None:
                frame = c.hl_sweep(k, 1, server.base_url)
                assert len(frame) == k and frame["error"].isna().all()

            variants = {"bare requests": bare, "HLClient.chat": hl_client, "execute": hl_execute,
                        "sweep(conc=1)": hl_sweep}
            for fn in variants.values():  # warm-up: connections, imports, project/config rows
                fn(min(args.n, 10))
            post_s: list[float] = []
            times = {name: [] for name in variants}
            cpus = {name: [] for name in variants}
            names = list(variants)
            for rep in range(args.repeat):
                for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate the order
                    fn = variants[name]
                    cpu0 = time.process_time()
                    post.reset()
                    wall, _ = c.timed(lambda: fn(args.n))
                    if name == "sweep(conc=1)":
                        wall += c.history_settle()  # its history record, written after it returned, counts here
                        post_s.append(post.total)
                    times[name].append(wall / args.n)
                    cpus[name].append((time.process_time() - cpu0) / args.n)
                    time.sleep(0.05)
        rows = []
        base = c.median(times["bare requests"])
        base_cpu = c.median(cpus["bare requests"])
        for name in variants:
            per = c.median(times[name])
            cpu = c.median(cpus[name])
            rows.append([name, 1000 * per, 1000 * min(times[name]), per / base, 1e6 * cpu,
                         1e6 * (cpu - base_cpu), cpu / base_cpu,
                         args.target if name != "bare requests" else "-",
                         c.verdict(per / base, args.target) if name != "bare requests" else "-"])
            if name != "bare requests":
                summary.append([variant, name, per / base, cpu / base_cpu, args.target,
                                c.verdict(per / base, args.target)])
        print(f"\n# server: {variant}; N={args.n} sequential requests per variant, {args.repeat} repetitions")
        print(f"# sweep(conc=1) spends a median {1000 * c.median(post_s):.1f} ms per sweep in to_frame + "
              f"archive.record_later (= {1000 * c.median(post_s) / args.n:.2f} ms/req at N={args.n}); "
              "its wall time includes the history record written after it returned")
        print(c.table(["variant", "ms/req (median)", "ms/req (best)", "x bare", "client cpu us/req",
                       "extra cpu us/req", "cpu x bare", "target", "verdict"], rows))
    print("\n# summary: wall time per request / bare requests wall time per request (medians); the verdict "
          "is on wall time, cpu x bare is the client CPU ratio")
    print(c.table(["server", "variant", "x bare", "cpu x bare", "target", "verdict"], summary))


if __name__ == "__main__":
    main()
