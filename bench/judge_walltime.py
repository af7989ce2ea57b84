"""Judge wall time vs a sweep of as many calls: judge() must run through the same concurrent pool.

    python bench/judge_walltime.py                                   # N=200 L=100 C=16, 3 repetitions
    python bench/judge_walltime.py --n 200 --latency-ms 50 --concurrency 8 --repeat 3

Against one ``python -m hl_notebook.server --mock-latency-ms L``, each repetition runs
``hl_notebook.sweep`` of the standard request over N input rows at concurrency C (the baseline),
then ``hl_notebook.judge`` over that sweep's N rows at the same concurrency (one judge call per
row, its score parsed from the reply). Ratio: judge wall / sweep wall, target <= 1.2. Also shown:
each against the ideal ceil(N/C)·L and the server's ``max_in_flight`` (the concurrency it saw).
The judge's time includes what the sweep's does not: reading the frame's rows, filling the
template and parsing every reply into the score columns.
"""
from __future__ import annotations

import argparse
import math

import _common as c

JUDGE_PROMPT = "system: You grade summaries.\nuser: Summary: {{output}}\nScore: 7"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_load_options(parser, n=(200, "rows judged (= calls in the baseline sweep)"),
                       latency_ms=(100.0, "server --mock-latency-ms"), concurrency=16,
                       repeat=(3, "repetitions (sweep, then judge)"), target=(1.2, "judge / sweep ratio that passes"))
    args = parser.parse_args()
    c.bounded(parser, args, n=5000, concurrency=64, repeat=20)
    c.header("judge wall time vs a sweep of as many calls")
    import hl_notebook

    ideal = math.ceil(args.n / args.concurrency) * args.latency_ms / 1000 or float("nan")  # L=0: no ideal
    rows = []
    with c.hl_server(args.latency_ms) as server:
        c.use_server(server.base_url)
        warm = c.hl_sweep(args.concurrency, args.concurrency, server.base_url)
        hl_notebook.judge(warm, JUDGE_PROMPT, model="judge", concurrency=args.concurrency, progress=False)
        for rep in range(args.repeat):
            c.server_stats(server.base_url, reset=True)
            sweep_wall, frame = c.timed(lambda: c.hl_sweep(args.n, args.concurrency, server.base_url))
            sweep_flight = c.server_stats(server.base_url)["max_in_flight"]
            c.server_stats(server.base_url, reset=True)
            judge_wall, judged = c.timed(lambda: hl_notebook.judge(
                frame, JUDGE_PROMPT, model="judge", concurrency=args.concurrency, progress=False,
                base_url=server.base_url))
            judge_flight = c.server_stats(server.base_url)["max_in_flight"]
            scored = int(judged["score.judge"].eq(7).sum())
            assert len(frame) == args.n and scored == args.n, (len(frame), scored)
            rows.append([rep + 1, sweep_wall, sweep_wall / ideal, sweep_flight, judge_wall, judge_wall / ideal,
                         judge_flight, scored, judge_wall / sweep_wall])
    print(f"\n# N={args.n} L={args.latency_ms:g} ms C={args.concurrency}: ideal ceil(N/C)*L = {ideal:.3f} s")
    print(c.table(["rep", "sweep s", "sweep x ideal", "sweep in flight", "judge s", "judge x ideal",
                   "judge in flight", "scored", "judge / sweep"], rows))
    ratio = c.median(r[-1] for r in rows)
    print(f"\n# median judge / sweep = {ratio:.3f} (target <= {args.target}): {c.verdict(ratio, args.target)}")


if __name__ == "__main__":
    main()
