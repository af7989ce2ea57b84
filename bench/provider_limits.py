"""Two notebooks sweeping against one provider key through one server: wall time vs the quota-bound ideal.

    python bench/provider_limits.py                                  # issue 15: 2 x 300 calls, 100 req/min: ~6 min
    python bench/provider_limits.py --budget 95rpm --budget none     # at 95 % of the quota, then no budget
    python bench/provider_limits.py --calls 60 --quota 20 --window 2 # the test suite's time-scaled run

A fake OpenAI upstream (``tests/fakes/quota_server.py``) lets ``--quota`` requests per key into any
``--window`` seconds (sliding) and answers 429 with Retry-After beyond. For each ``--budget``
(default: the quota itself, as ``openai=<quota per minute>rpm``; ``none`` runs the server without
``--provider-limits``), a fresh ``python -m hl_notebook.server`` process is started and
``--notebooks`` processes each sweep ``--calls`` calls with one shared key (``hl_notebook.sweep``,
default concurrency, the client's own backoff). The baseline, in the same command, is the
quota-bound ideal: all calls × window / quota seconds (every request sent at the quota's rate).

Columns: ``wall/ideal`` (the done-when: <= 1.2), ``429 rows`` (calls that ended as 429 errors:
<= 1 %), ``upstream 429s`` (requests the fake refused), ``retried`` (the server's retries after an
upstream 429), ``waited`` (requests the server held for their slot), ``server requests`` (chat
requests the server received: above the calls when notebooks retried).
"""
from __future__ import annotations

import argparse
import sys

import _common as c

sys.path.insert(0, str(c.ROOT))
from tests.fakes import quota_server, serve  # noqa: E402
from tests.sweeping_notebooks import sweep_together  # noqa: E402

PROVIDER_KEY = "sk-bench-shared-key"


def run(budget: str, args: argparse.Namespace, ideal: float) -> list[object]:
    quota = quota_server.SlidingWindow(args.quota, args.window)
    extra = [] if budget == "none" else ["--provider-limits", f"openai={budget}"]
    with serve(quota_server.create_app(quota)) as upstream:
        server = c.hl_server(extra_args=extra, name=f"limits-{budget}").start()
        try:
            sweeps = sweep_together(server.base_url, c.API_KEY, upstream + "/v1", PROVIDER_KEY,
                                    notebooks=args.notebooks, calls=args.calls, timeout=args.window * 100 + 600)
            stats = c.server_stats(server.base_url)
        finally:
            server.stop()
    key = (stats.get("provider_limits") or [{}])[0]
    calls = args.notebooks * args.calls
    return [budget, calls, sweeps.wall_s, ideal, sweeps.wall_s / ideal, sweeps.rate_limited,
            f"{100 * sweeps.rate_limited / calls:.1f} %", len(sweeps.errors), quota.refused[PROVIDER_KEY],
            key.get("retries", "-"), key.get("waited", "-"), stats["requests"],
            "PASS" if sweeps.wall_s / ideal <= args.target and sweeps.rate_limited <= 0.01 * calls else "FAIL"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=2, help="notebook processes sweeping at once")
    parser.add_argument("--calls", type=int, default=300, help="calls per notebook")
    parser.add_argument("--quota", type=int, default=100, help="requests the upstream lets in per key per window")
    parser.add_argument("--window", type=float, default=60.0, help="the upstream's sliding window, seconds")
    parser.add_argument("--budget", action="append", default=[],
                        help="server budget as <n>rpm[,<n>tpm], or none; repeat to compare (default: the quota)")
    parser.add_argument("--target", type=float, default=1.2, help="wall/ideal that passes")
    args = parser.parse_args()
    budgets = args.budget or [f"{args.quota * 60 / args.window:g}rpm"]
    c.header("two notebooks, one provider key: wall time vs the quota-bound ideal")
    ideal = args.notebooks * args.calls * args.window / args.quota
    print(f"# upstream: {args.quota} requests per key per {args.window:g} s (sliding); "
          f"{args.notebooks} notebooks x {args.calls} calls; ideal {ideal:.1f} s", flush=True)
    rows = [run(budget, args, ideal) for budget in budgets]
    print(c.table(["budget", "calls", "wall s", "ideal s", "wall/ideal", "429 rows", "429 rows %", "error rows",
                   "upstream 429s", "retried", "waited", "server requests", "verdict"], rows))


if __name__ == "__main__":
    main()
