"""User settings (``%config HLSettings.*``), usable without IPython too.

Why: one place for where to connect and how to behave (timeouts, retries, concurrency, tracebacks);
it holds no secrets — only the *name* of the environment variable that holds the key — because
``%config HLSettings`` prints every value.
"""
from __future__ import annotations

import os
from pathlib import Path

from traitlets import Bool, Float, Int, TraitError, Unicode, validate
from traitlets.config import SingletonConfigurable

HOME = Path(os.environ.get("HL_NOTEBOOK_HOME", Path.home() / ".hl_notebook"))


class HLSettings(SingletonConfigurable):
    """Settings for %%hlchat, sweeps and the panel. Precedence: option > %config > environment > default."""

    base_url = Unicode("", help="v4 server URL such as http://127.0.0.1:8000/v4; empty: $HUMANLOOP_BASE_URL, "
                                "else the embedded local server").tag(config=True)
    api_key_env = Unicode("HUMANLOOP_API_KEY", help="environment variable holding the X-API-KEY").tag(config=True)
    connect_timeout = Float(10.0, help="seconds to wait for a connection").tag(config=True)
    read_timeout = Float(300.0, help="seconds to wait for an answer (or between streamed events)").tag(config=True)
    call_deadline = Float(120.0, allow_none=True, help="seconds one call may take in total, retries' waits and "
                          "streaming included (trickled bytes cannot extend it); None: no total limit"
                          ).tag(config=True)
    max_retries = Int(3, help="retries for connection failures, 429 and 503 (never for other errors)"
                      ).tag(config=True)
    backoff_max = Float(30.0, help="longest wait between retries, in seconds").tag(config=True)
    concurrency = Int(32, help="most requests a sweep keeps in flight; it starts there, halves when the "
                      "server answers 429/503 and grows back after successes").tag(config=True)
    show_traceback = Bool(False, help="show full tracebacks instead of one-line errors").tag(config=True)
    provider = Unicode("", help="provider for /chat when no --provider is given; empty: mock on the "
                                "embedded server, the server's default (openai) elsewhere").tag(config=True)
    project = Unicode("", help="default project name for calls that give none").tag(config=True)
    history_path = Unicode(str(HOME / "history.sqlite"), help="SQLite file of the call history; "
                           "empty to keep history in memory only").tag(config=True)
    cache = Bool(False, help="answer identical requests from the local response cache").tag(config=True)
    cache_path = Unicode(str(HOME / "cache.sqlite"), help="SQLite file of the response cache").tag(config=True)
    progress = Bool(None, allow_none=True, help="progress bars for sweeps: True always, False never, "
                    "None (default) in notebooks only").tag(config=True)
    mock_latency_ms = Float(0.0, help="simulated mock latency of the embedded server").tag(config=True)

    @validate("connect_timeout", "read_timeout", "backoff_max", "call_deadline")
    def _positive(self, proposal):  # noqa: ANN001, ANN202 - traitlets signature
        if proposal["value"] is not None and proposal["value"] <= 0:
            raise TraitError(f"{proposal['trait'].name} must be positive")
        return proposal["value"]

    @validate("concurrency")
    def _at_least_one(self, proposal):  # noqa: ANN001, ANN202
        if proposal["value"] < 1:
            raise TraitError("concurrency must be at least 1")
        return proposal["value"]

    @validate("max_retries")
    def _not_negative(self, proposal):  # noqa: ANN001, ANN202
        if proposal["value"] < 0:
            raise TraitError("max_retries must be 0 or more")
        return proposal["value"]

