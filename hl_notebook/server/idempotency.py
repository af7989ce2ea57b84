"""``Idempotency-Key`` on the chat POSTs: a call that completed is answered again from the store.

Why: the client sends one opaque key (at most 200 characters) on every attempt of one call, including
a ``retry(df)`` from another process, because only the server knows whether an attempt it never
heard back from ran. Rules:

* Only completed calls are stored: every sample finished and its log was written; the response is
  stored under the key in the same transaction as the logs. A key whose attempts failed (a
  provider error, a stream the client left) runs again. So does a call with ``save: false``:
  its response holds the inputs, messages and outputs that flag keeps out of the store.
* A stored key answers with the stored body — as JSON, or replayed as SSE events of the usual shape
  when the request streams — with ``Idempotent-Replayed: true``, and calls no provider and writes no log.
* What a call *is*: the endpoint and the validated body without ``provider_api_keys`` and ``stream``
  (keys may be rotated between attempts; a stream and a plain call of the same request get the same
  result). The same key with another request is a 422 at ``["header", "Idempotency-Key"]``.
* Two requests with one key at the same time: the second waits for the first to end, then answers
  from what it stored (or runs, if the first failed); after ``ServerSettings.idempotency_wait``
  seconds it gives up with a 409. The wait is per server process; across processes sharing one
  file, the first stored response is kept.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from fastapi import HTTPException

from .errors import BadRequest
from .schemas import ChatRequestBase

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200
LOC = ["header", HEADER]


def checked_key(value: str | None) -> str | None:
    """The header's key, None without the header; a 422 unless it has 1 to 200 characters."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise BadRequest(LOC, f"{HEADER} must have 1 to {MAX_KEY_LENGTH} characters")
    return value


def request_hash(endpoint: str, body: ChatRequestBase) -> str:
    """What the call is (see the module docstring), as a SHA-256 hex digest."""
    fields = body.model_dump(mode="json", by_alias=True, exclude={"provider_api_keys", "stream"})
    text = json.dumps([endpoint, fields], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_request(stored_hash: str, digest: str) -> None:
    if stored_hash != digest:
        raise BadRequest(LOC, f"this {HEADER} was used for a different request; use a new key for a new call")


class InFlight:
    """The keys of calls running in this process; a second request with one of them waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    def enter(self, key: str, timeout: float) -> None:
        """Mark ``key`` running, once no other request runs it.

        Raises:
            HTTPException: 409 after ``timeout`` seconds of waiting.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = self._running.get(key)
                if done is None:
                    self._running[key] = threading.Event()
                    return
            if not done.wait(max(0.0, deadline - time.monotonic())):
                raise HTTPException(409, f"a request with this {HEADER} is still in progress; retry it later")

    def try_enter(self, key: str) -> bool:
        """Mark ``key`` running if no request runs it now; never waits (for the event loop)."""
        with self._lock:
            if key in self._running:
                return False
            self._running[key] = threading.Event()
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            done = self._running.pop(key, None)
        if done is not None:
            done.set()
