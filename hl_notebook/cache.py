"""Opt-in response cache: identical requests are answered from a local SQLite file.

Why: re-running a comparison cell should cost nothing. The key is the request body without
keys (``spec.request_key``): same endpoint, messages, config, inputs and ``num_samples`` give the
same samples, by sample index. Only successful, complete responses are stored, redacted.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import one_line
from .secrets import redact
from .spec import ChatSpec, request_key

T = TypeVar("T")

SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created_at REAL NOT NULL, response TEXT NOT NULL)"


class ResponseCache:
    """Thread-safe: one connection per thread, WAL mode.

    Best-effort: a cache that cannot be used (not SQLite, read-only, its folder a file …) warns
    once, then misses and stores nothing, so it never turns a finished run into an error.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._unusable = False
        self._lock = threading.Lock()
        self._try(self._create, None)

    def _create(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db().execute(SCHEMA)

    def _try(self, action: Callable[[], T], otherwise: T) -> T:
        if self._unusable:
            return otherwise
        try:
            return action()
        except (sqlite3.Error, OSError, ValueError) as exc:
            with self._lock:
                warn, self._unusable = not self._unusable, True
            if warn:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                warnings.warn(one_line(f"hl_notebook: the response cache {self.path} cannot be used ({reason}); "
                                       "running without it", 500), RuntimeWarning, stacklevel=3)
            return otherwise

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    @staticmethod
    def key(spec: ChatSpec) -> str:
        return hashlib.sha256(request_key(spec).encode()).hexdigest()

    def get(self, spec: ChatSpec) -> dict[str, Any] | None:
        """The stored response, or None (also when the cache cannot be used)."""
        def read() -> dict[str, Any] | None:
            row = self._db().execute("SELECT response FROM responses WHERE key = ?", (self.key(spec),)).fetchone()
            return json.loads(row[0]) if row else None
        return self._try(read, None)

    def put(self, spec: ChatSpec, response: dict[str, Any]) -> None:
        """Store ``response`` without raw provider payloads and the provider request (size, and they
        may carry secrets), and redacted: no key is ever written to the file."""
        kept = redact({k: v for k, v in response.items() if k not in ("provider_responses", "provider_request")})
        self._try(lambda: self._db().execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                                             (self.key(spec), time.time(), json.dumps(kept))), None)
