"""Server settings, resolved once at start-up.

Why: the app factory, the CLI and the embedded server all build the app from the same values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DB = Path.home() / ".hl_notebook" / "server.sqlite"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_UPSTREAM_TIMEOUT = 120.0  # seconds a pass-through call waits for the upstream's next byte


@dataclass(frozen=True)
class ServerSettings:
    """``api_key`` is the one key clients must send as ``X-API-KEY``; it is never logged."""

    api_key: str
    db_path: str = str(DEFAULT_DB)
    mock_latency_ms: float = 0.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    worker_threads: int = 128  # chat calls in progress at once (each holds a thread until it ends)
    admin_threads: int = 32  # management endpoints and sync dependencies: never taken by chat calls
    idempotency_wait: float = 600.0  # seconds a request waits for a running call with its Idempotency-Key
    faults: bool = False  # --faults: honour X-HL-Fault headers and fault_rates (see faults.py)
    fault_rates: dict[str, float] | None = None
    fault_seed: int = 0
    fault_retry_after: str = "1"
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT  # --upstream-timeout; a config's other.timeout wins
    experiment_seed: int | None = None  # --experiment-seed: reproducible experiment sampling (tests, demos)
    workers: int = 1  # --workers: worker processes (more than one needs PostgreSQL; see workers.py)
    provider_limits: str = ""  # --provider-limits (ratelimit.parse_limits); "" = no budgets per provider key

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return (f"ServerSettings(api_key='***', db_path={self.db_path!r}, "
                f"mock_latency_ms={self.mock_latency_ms}, max_body_bytes={self.max_body_bytes})")


def env_api_key() -> str | None:
    return os.environ.get("HL_NOTEBOOK_API_KEY") or None
