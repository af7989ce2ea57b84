"""DataFrame assembly: ``hl_notebook.frame.to_frame`` vs ``pd.DataFrame.from_records`` of the raw dicts.

    python bench/frame_assembly.py                          # 20,000 responses, 1 sample each
    python bench/frame_assembly.py --n 100000 --repeat 3    # full size
    python bench/frame_assembly.py --n 100000 --samples 2
    python bench/frame_assembly.py --n 20000 --profile      # + cProfile of to_frame (top functions)
    python bench/frame_assembly.py --n 100000 --string-storage python   # "string" without pyarrow

The CallResults are synthesized in this process (no server): ChatSpecs as ``sweep`` makes them
(``make_specs``: a templated two-message request, one input row per call, model × temperature axes)
and response dicts shaped like the local server's ChatResponse (envelope, ``data`` entries with
messages and output_message, usage, provider_request/responses), ``--samples`` entries per call.

Baseline (same process, same inputs): flatten each data entry the simple way — call, sample, log
id, config parameters, ``inputs.<name>``, output, finish reason, token counts, latency, created_at —
into one dict and ``pd.DataFrame.from_records``. Ratio = to_frame time / baseline time (medians of
interleaved repetitions). to_frame does more than the baseline: the contract's dtypes, the
``request`` JSON and the rendered ``prompt`` of every call, effective parameter values.
"""
from __future__ import annotations

import argparse
import gc
import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import _common as c


def synthesize(n: int, samples: int) -> list[Any]:
    from hl_notebook.api import _messages
    from hl_notebook.call import CallResult
    from hl_notebook.plan import make_specs

    temperatures = [0.0, 0.7]
    models = ["gpt-4o-mini", "claude-3-haiku"]
    per_config = -(-n // (len(models) * len(temperatures)))
    specs = make_specs(_messages(c.MESSAGES), axes={"model": models, "temperature": temperatures},
                       inputs=c.inputs_rows(per_config), default_provider="mock")[:n]
    rng = random.Random(0)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    results = []
    for call, spec in enumerate(specs):
        config = spec.model_config
        user = f"Summarise item {spec.inputs['item']} of the catalogue in one sentence."
        messages = [{"role": "system", "content": "You are terse.", "name": None, "tool_call_id": None,
                     "tool_calls": None, "tool_call": None},
                    {"role": "user", "content": user, "name": None, "tool_call_id": None, "tool_calls": None,
                     "tool_call": None}]
        data = []
        for index in range(samples):
            text = f"{config['model']}: {user} ~ " + " ".join(rng.choice(("indeed", "perhaps", "notably",
                                                                           "briefly")) for _ in range(4))
            data.append({"id": f"data_{call:010d}{index:011d}", "index": index, "output": text, "raw_output": text,
                         "inputs": dict(spec.inputs), "finish_reason": "stop",
                         "model_config_id": f"config_{hash((config['model'], config['temperature'])) % 10**21:021d}",
                         "messages": messages, "tool_results": [], "tool_calls": None, "tool_call": None,
                         "output_message": {"role": "assistant", "content": text, "name": None, "tool_call_id": None,
                                            "tool_calls": None, "tool_call": None}})
        response = {"project_id": "pr_0y4M5U7HoIgSTCLh7tyDb", "num_samples": samples, "logprobs": None,
                    "suffix": None, "user": None, "data": data,
                    "usage": {"prompt_tokens": 12, "generation_tokens": 15 * samples, "total_tokens": 12 + 15 * samples},
                    "metadata": None, "provider_responses": [{"object": "mock.completion", "model": config["model"],
                                                              "choices": [{"index": d["index"], "text": d["output"],
                                                                           "finish_reason": "stop"} for d in data]}],
                    "provider_request": {"model": config["model"], "messages": messages, "n": samples,
                                         "temperature": config["temperature"], "max_tokens": -1},
                    "session_id": None, "tool_choice": None}
        results.append(CallResult(call, spec, response, latency_s=0.05 + rng.random() / 10,
                                  created_at=start + timedelta(milliseconds=call)))
    return results


def baseline(results: list[Any]) -> Any:
    """The simple way: one flat dict per data entry, then pd.DataFrame.from_records."""
    import pandas as pd

    records = []
    for result in results:
        spec, response = result.spec, result.response or {}
        usage = response.get("usage") or {}
        inputs = {f"inputs.{k}": v for k, v in spec.inputs.items()}
        for entry in response.get("data") or [{}]:
            records.append({"call": result.call, "sample": entry.get("index"), "log_id": entry.get("id"),
                            "endpoint": spec.endpoint, "project_id": response.get("project_id"),
                            **spec.model_config, "model_config_id": entry.get("model_config_id"), **inputs,
                            "output": entry.get("output"), "finish_reason": entry.get("finish_reason"),
                            "prompt_tokens": usage.get("prompt_tokens"),
                            "generation_tokens": usage.get("generation_tokens"),
                            "total_tokens": usage.get("total_tokens"), "latency_s": result.latency_s,
                            "created_at": result.created_at})
    return pd.DataFrame.from_records(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="responses (calls)")
    parser.add_argument("--samples", type=int, default=1, choices=(1, 2, 3, 4))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one to_frame run")
    parser.add_argument("--string-storage", choices=("auto", "python", "pyarrow"), default="auto",
                        help="pandas' mode.string_storage (the 'string' dtype's backing; pyarrow if installed)")
    args = parser.parse_args()
    c.bounded(parser, args, n=500000, repeat=10)
    c.header("DataFrame assembly: to_frame vs pd.DataFrame.from_records")
    import pandas as pd

    from hl_notebook import frame as hlframe

    pd.set_option("mode.string_storage", args.string_storage)
    results = synthesize(args.n, args.samples)
    expected_rows = args.n * args.samples
    steps = {"from_records (baseline)": lambda: baseline(results), "to_frame": lambda: hlframe.to_frame(results)}
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    gc.collect()
    for rep in range(args.repeat):  # interleaved, so load on the shared machine hits both alike
        for name, step in steps.items():
            cpu_start = time.process_time()
            seconds, df = c.timed(step)
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(seconds)
            assert len(df) == expected_rows
            del df
            gc.collect()
    base, base_cpu = c.median(wall["from_records (baseline)"]), c.median(cpu["from_records (baseline)"])
    rows = [[name, c.median(wall[name]), min(wall[name]), c.median(wall[name]) / base, c.median(cpu[name]),
             c.median(cpu[name]) / base_cpu, 1e6 * c.median(wall[name]) / expected_rows] for name in steps]
    print(f"# {args.n:,} responses x {args.samples} sample(s) = {expected_rows:,} rows; pandas {pd.__version__}; "
          f"string storage {pd.StringDtype().storage}; {args.repeat} repetitions")
    print(c.table(["step", "median s", "best s", "x baseline", "cpu s", "cpu x baseline", "us/row"], rows))
    print(f"to_frame / from_records = {c.median(wall['to_frame']) / base:.2f}x wall, "
          f"{c.median(cpu['to_frame']) / base_cpu:.2f}x CPU")
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        hlframe.to_frame(results)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
