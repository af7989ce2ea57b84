"""History: ``archive.record`` vs ``to_frame`` of the same run, and the client's memory over many sweeps.

    python bench/history_record.py                                  # 20,000 rows; ten 2,000-row runs
    python bench/history_record.py --n 100000 --repeat 3            # record time at full size
    python bench/history_record.py --sweeps 10 --rows 10000         # RSS over ten 10k-row runs (synthetic)
    python bench/history_record.py --sweeps 10 --rows 10000 --server    # ... as real sweeps of a local server
    python bench/history_record.py --n 100000 --sweeps 0 --string-storage python   # "string" without pyarrow

Part 1 (time): the CallResults of ``frame_assembly.synthesize`` (no server); baseline = ``to_frame``
of them, measured interleaved with ``archive.record`` of the frame it built, into a fresh history
file in this run's temporary folder. Ratio = record / to_frame (wall and CPU). Also: reading the
run back (``history()``), and the file's size per row.

Part 2 (memory): ``--sweeps`` runs of ``--rows`` rows each, recorded into history; the process's
resident set size (VmRSS, after ``gc.collect()``) after each. Synthetic (default): each run is a
fresh ``to_frame`` of synthesized results (a sweep without the network), dropped after recording.
``--server``: each run is ``hl_notebook.sweep`` of ``--rows`` calls against a local server process
(mock provider, no latency, concurrency 16). The figure is RSS after the last run minus after
the first. Run an older library with ``PYTHONPATH=<its tree>`` for a before/after comparison.
"""
from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path
from typing import Any

import _common as c


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_timed(fn: Any) -> tuple[float, float, Any]:
    cpu = time.process_time()
    wall, value = c.timed(fn)
    return wall, time.process_time() - cpu, value


def record_time(args: argparse.Namespace) -> None:
    from frame_assembly import synthesize

    from hl_notebook import archive
    from hl_notebook.config import HLSettings
    from hl_notebook.frame import to_frame

    results = synthesize(args.n, args.samples)
    wall: dict[str, list[float]] = {"to_frame (baseline)": [], "archive.record": [], "history() read back": []}
    cpu: dict[str, list[float]] = {name: [] for name in wall}
    size = 0.0
    for rep in range(args.repeat):
        path = c.tmp_path(f"history-{rep}.sqlite")
        HLSettings.instance().history_path = str(path)
        gc.collect()
        seconds, spent, frame = cpu_timed(lambda: to_frame(results))
        wall["to_frame (baseline)"].append(seconds)
        cpu["to_frame (baseline)"].append(spent)
        seconds, spent, _ = cpu_timed(lambda: archive.record(frame))
        wall["archive.record"].append(seconds)
        cpu["archive.record"].append(spent)
        rows = len(frame)
        del frame
        gc.collect()
        seconds, spent, back = cpu_timed(archive.history)
        assert len(back) >= rows, (len(back), rows)
        wall["history() read back"].append(seconds)
        cpu["history() read back"].append(spent)
        del back
        size = os.path.getsize(path) / rows
        path.unlink()
    base, base_cpu = c.median(wall["to_frame (baseline)"]), c.median(cpu["to_frame (baseline)"])
    table = [[name, c.median(wall[name]), min(wall[name]), c.median(wall[name]) / base, c.median(cpu[name]),
              c.median(cpu[name]) / base_cpu] for name in wall]
    rows = args.n * args.samples
    print(f"# part 1: {args.n:,} responses x {args.samples} sample(s) = {rows:,} rows; {args.repeat} repetitions; "
          f"history file {size:.0f} bytes/row")
    print(c.table(["step", "median s", "best s", "x to_frame", "cpu s", "cpu x to_frame"], table))
    print(f"record / to_frame = {c.median(wall['archive.record']) / base:.2f}x wall, "
          f"{c.median(cpu['archive.record']) / base_cpu:.2f}x CPU (target <= 0.5)")


def memory(args: argparse.Namespace) -> None:
    from hl_notebook.config import HLSettings

    HLSettings.instance().history_path = str(c.tmp_path("history-memory.sqlite"))
    if args.server:
        with c.hl_server(0.0) as server:
            c.use_server(server.base_url)
            readings = _runs(args, lambda: c.hl_sweep(args.rows, 16, server.base_url))
    else:
        from frame_assembly import synthesize

        from hl_notebook import archive
        from hl_notebook.frame import to_frame

        def run() -> None:
            archive.record(to_frame(synthesize(args.rows, 1)))
        readings = _runs(args, run)
    source = "sweeps against a local server (mock)" if args.server else "synthetic runs (to_frame + record)"
    print(f"# part 2: {args.sweeps} {source} of {args.rows:,} rows; RSS after each, MB")
    rows = [[i + 1, mb, mb - readings[0]] for i, mb in enumerate(readings)]
    print(c.table(["run", "RSS MB", "vs after run 1"], rows))
    print(f"RSS after run {args.sweeps} - after run 1 = {readings[-1] - readings[0]:.1f} MB (target <= 50)")


def _runs(args: argparse.Namespace, run: Any) -> list[float]:
    readings = []
    for _ in range(args.sweeps):
        run()  # the frame is dropped: only history may keep anything
        gc.collect()
        readings.append(rss_mb())
    return readings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="responses (calls) for part 1")
    parser.add_argument("--samples", type=int, default=1, choices=(1, 2, 3, 4))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sweeps", type=int, default=10, help="runs for part 2 (0: skip)")
    parser.add_argument("--rows", type=int, default=2000, help="rows per run in part 2")
    parser.add_argument("--server", action="store_true", help="part 2 as real sweeps against a local server")
    parser.add_argument("--skip-time", action="store_true", help="part 2 only")
    parser.add_argument("--string-storage", choices=("auto", "python", "pyarrow"), default="auto",
                        help="pandas' mode.string_storage (the 'string' dtype's backing; pyarrow if installed)")
    args = parser.parse_args()
    c.bounded(parser, args, n=500000, repeat=10, rows=50000)
    if not 0 <= args.sweeps <= 20:
        parser.error("--sweeps 0..20")
    c.header("History: archive.record vs to_frame; client RSS over many runs")
    import pandas as pd

    pd.set_option("mode.string_storage", args.string_storage)
    print(f"# pandas {pd.__version__}, string storage {pd.StringDtype().storage}")
    if not args.skip_time:
        record_time(args)
    if args.sweeps:
        memory(args)


if __name__ == "__main__":
    main()
