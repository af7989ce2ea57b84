"""Opt-in response cache: identical requests are answered from a local SQLite file.

Why: re-running a comparison cell should cost nothing. The key is the request body without
keys (``spec.request_key``): same endpoint, messages, config, inputs and ``num_samples`` give the
same samples, by sample index. Only successful, complete responses are stored.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .spec import ChatSpec, request_key

SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created_at REAL NOT NULL, response TEXT NOT NULL)"


class ResponseCache:
    """Thread-safe: one connection per thread, WAL mode."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().execute(SCHEMA)

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
        row = self._db().execute("SELECT response FROM responses WHERE key = ?", (self.key(spec),)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, spec: ChatSpec, response: dict[str, Any]) -> None:
        # raw provider payloads and the provider request are not kept (size, and they may carry secrets)
        kept = {k: v for k, v in response.items() if k not in ("provider_responses", "provider_request")}
        self._db().execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                           (self.key(spec), time.time(), json.dumps(kept)))
