"""Several notebooks sweeping at once through one server with one provider key, each its own process.

Why: the per-key limiter exists for colleagues who sweep against one key at the same time; each
"notebook" here is a Python process running ``hl_notebook.sweep`` (with the client's own backoff),
started together once all are ready, so the server sees what it would see from a team. Shared by
``tests/reliability/test_shared_key_sweeps.py`` and ``bench/provider_limits.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Sequence

NOTEBOOK = """
import json, sys, time
import pandas, hl_notebook
upstream, calls, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [{"item": f"{name}-{i}"} for i in range(calls)]
print("ready", flush=True)
sys.stdin.readline()
frame = hl_notebook.sweep("user: say {{item}}", provider="openai", model="m", temperature=0, inputs=rows,
                          other={"base_url": upstream}, progress=False, cache=False)
print(json.dumps({"end": time.time(), "rows": len(frame), "errors": frame["error_type"].dropna().tolist()}),
      flush=True)
"""


@dataclass(frozen=True)
class Sweeps:
    """What the notebooks got: every row, the error types of the failed ones, and the wall time."""

    rows: int
    errors: list[str]
    wall_s: float

    @property
    def rate_limited(self) -> int:
        """Rows that ended as 429 errors."""
        return self.errors.count("HLRateLimitError")


def sweep_together(server_urls: str | Sequence[str], server_key: str, upstream_url: str, provider_key: str, *,
                   notebooks: int = 2, calls: int = 60, timeout: float = 600) -> Sweeps:
    """``notebooks`` processes, each sweeping ``calls`` calls against ``upstream_url`` (an OpenAI base
    URL) through a server (notebook n through ``server_urls[n % len]``), all with ``provider_key``;
    the wall time runs from the moment all of them are told to start to the moment the last frame
    is complete."""
    urls = [server_urls] if isinstance(server_urls, str) else list(server_urls)
    env = {**os.environ, "HUMANLOOP_API_KEY": server_key, "OPENAI_API_KEY": provider_key}
    children = [subprocess.Popen([sys.executable, "-c", NOTEBOOK, upstream_url, str(calls), f"nb{n}"],
                                 env={**env, "HUMANLOOP_BASE_URL": urls[n % len(urls)]},
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for n in range(notebooks)]
    try:
        for child in children:
            line = child.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                raise RuntimeError(f"a notebook did not start: {line!r}")
        started = time.time()
        for child in children:
            child.stdin.write("go\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
        results = [json.loads(child.communicate(timeout=timeout)[0].strip().splitlines()[-1]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return Sweeps(sum(r["rows"] for r in results), [e for r in results for e in r["errors"]],
                  max(r["end"] for r in results) - started)
