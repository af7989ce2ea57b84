"""Run by sdk_vs_sweep.py with the *SDK's* interpreter (humanloop==0.5.18 in its own venv; it must
not import hl_notebook): N sequential ``Humanloop.chat`` calls, each the benchmark's standard request
(templated user message, one input row), timed here; prints one JSON line with the result.

    $HL_SDK_PYTHON bench/_sdk_calls.py --base-url http://127.0.0.1:PORT/v4 --api-key KEY --n 40
"""
from __future__ import annotations

import argparse
import json
import time

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise item {{item}} of the catalogue in one sentence."}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    from humanloop import Humanloop

    import_s = time.perf_counter() - start
    client = Humanloop(api_key=args.api_key, host=args.base_url)
    config = {"model": args.model, "provider": "mock", "temperature": args.temperature}

    def call(i: int) -> str:
        response = client.chat(messages=MESSAGES, model_config=config, inputs={"item": i}, source="sdk-bench")
        return response.body["data"][0]["output"]

    for i in range(args.warmup):
        call(i)
    outputs = []
    start = time.perf_counter()
    for i in range(args.n):
        outputs.append(call(i))
    elapsed = time.perf_counter() - start
    print(json.dumps({"n": args.n, "elapsed_s": elapsed, "import_s": import_s,
                      "ok": sum(bool(o) for o in outputs), "first_output": outputs[0] if outputs else None}))


if __name__ == "__main__":
    main()
