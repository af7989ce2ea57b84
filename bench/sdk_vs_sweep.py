"""The official Python v4 SDK (humanloop==0.5.18) making N calls one by one vs an hl_notebook sweep.

    python bench/sdk_vs_sweep.py                              # N=40, L=50 ms, C=8
    python bench/sdk_vs_sweep.py --n 200 --latency-ms 50 --repeat 3

Against one ``python -m hl_notebook.server --mock-latency-ms L`` per server variant, each
repetition runs the same N requests (the standard templated request, one input row each) as:

* ``SDK sequential``  ``Humanloop(api_key, host).chat(...)`` N times in a subprocess of the SDK's own
                      interpreter (bench/_sdk_calls.py; it times its own loop, imports excluded);
* ``hl sweep C=1``    ``hl_notebook.sweep(..., concurrency=1)``: the like-for-like sequential run;
* ``hl sweep C=C``    ``hl_notebook.sweep(..., concurrency=C)``: what a notebook user runs.

Ratios: SDK time / hl time (above 1: hl_notebook is faster), and each time / its ideal
(N·L sequential, ceil(N/C)·L concurrent). The SDK conflicts with the project's urllib3, so it lives
in its own venv: $HL_SDK_PYTHON, else /tmp/hl-sdk-venv/bin/python (created with
``python -m venv`` + ``pip install humanloop==0.5.18`` when missing).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import _common as c

SDK_VENV = Path("/tmp/hl-sdk-venv")
SDK_VERSION = "humanloop==0.5.18"


def sdk_python() -> str:
    """The interpreter that has the SDK: $HL_SDK_PYTHON, else the /tmp venv (created on first use)."""
    explicit = os.environ.get("HL_SDK_PYTHON")
    if explicit:
        return explicit
    python = SDK_VENV / "bin" / "python"
    check = [str(python), "-c", "import humanloop, importlib.metadata as m; print(m.version('humanloop'))"]
    if python.exists() and subprocess.run(check, capture_output=True, text=True).stdout.strip() == "0.5.18":
        return str(python)
    print(f"# creating {SDK_VENV} with {SDK_VERSION} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", SDK_VERSION], check=True, timeout=600)
    return str(python)


def run_sdk(python: str, base_url: str, n: int) -> dict:
    out = subprocess.run([python, str(c.BENCH_DIR / "_sdk_calls.py"), "--base-url", base_url, "--api-key", c.API_KEY,
                          "--n", str(n), "--model", c.MODEL, "--temperature", str(c.TEMPERATURE)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError("SDK run failed:\n" + out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_load_options(parser, n=40, latency_ms=50.0, repeat=2,
                       concurrency=(8, "the concurrent sweep's C (HLSettings default 8)"))
    c.add_server_option(parser)
    args = parser.parse_args()
    c.bounded(parser, args, n=5000, repeat=10)
    c.header("official SDK (sequential) vs hl_notebook sweep")
    python = sdk_python()
    seq_ideal = args.n * args.latency_ms / 1000
    conc_ideal = -(-args.n // args.concurrency) * args.latency_ms / 1000
    summary = []
    for variant in c.server_variants(args.server):
        rows = []
        times: dict[str, list[float]] = {"SDK sequential": [], "hl sweep C=1": [], f"hl sweep C={args.concurrency}": []}
        with c.hl_server(args.latency_ms, variant=variant) as server:
            c.use_server(server.base_url)
            c.hl_sweep(min(args.n, 8), args.concurrency, server.base_url)  # warm-up
            for rep in range(args.repeat):
                sdk = run_sdk(python, server.base_url, args.n)
                assert sdk["ok"] == args.n, sdk
                times["SDK sequential"].append(sdk["elapsed_s"])
                rows.append([rep + 1, "SDK sequential", sdk["elapsed_s"], sdk["elapsed_s"] / seq_ideal, 1.0])
                for kind, conc, ideal in (("hl sweep C=1", 1, seq_ideal),
                                          (f"hl sweep C={args.concurrency}", args.concurrency, conc_ideal)):
                    wall, frame = c.timed(lambda: c.hl_sweep(args.n, conc, server.base_url))
                    assert len(frame) == args.n and frame["error"].isna().all()
                    times[kind].append(wall)
                    rows.append([rep + 1, kind, wall, wall / ideal, sdk["elapsed_s"] / wall])
        print(f"\n# server: {variant}; N={args.n} L={args.latency_ms:g} ms; ideal sequential N*L = {seq_ideal:.2f} s, "
              f"ideal concurrent ceil(N/C)*L = {conc_ideal:.2f} s; SDK import {sdk['import_s']:.2f} s (not timed)")
        print(c.table(["rep", "client", "wall s", "x ideal", "SDK / this (same rep)"], rows))
        sdk_median = c.median(times["SDK sequential"])
        for kind in list(times)[1:]:
            summary.append([variant, kind, c.median(times[kind]), sdk_median, sdk_median / c.median(times[kind])])
    print("\n# medians: SDK sequential wall / hl wall (above 1: hl_notebook faster)")
    print(c.table(["server", "hl run", "hl wall s", "SDK wall s", "SDK / hl"], summary))


if __name__ == "__main__":
    main()
