"""Fault injection for the chat endpoints, off unless the server starts with ``--faults``.

Why: sweeps, retries and the reliability suite must be proven against 500s, 503s, 429s with
``Retry-After``, slow answers, dropped connections and streams cut mid-way — failures a healthy
server never produces. Faults are injected *before* the endpoint runs (nothing is stored for a
faulted request), except ``cut``, which breaks a stream after its first events.

Per request: header ``X-HL-Fault: KIND[:ARG]`` with KIND one of ``500``, ``503[:retry_after]``,
``429[:retry_after]``, ``slow:MS``, ``drop``, ``cut[:events]``. Server-wide: ``--fault-rates
500=0.1,429=0.05,drop=0.02`` draws one fault per request from a seeded generator (``--fault-seed``), with ``--fault-retry-after`` seconds on drawn 429/503s.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

CHAT_PATHS = ("/chat", "/chat-deployed", "/chat-experiment", "/chat-model-config")
KINDS = ("500", "503", "429", "slow", "drop", "cut")


class DroppedConnection(Exception):
    """Raised after a response start with a lying Content-Length: the server closes the socket."""


def parse_rates(text: str) -> dict[str, float]:
    """``"500=0.1,429=0.05"`` -> {"500": 0.1, "429": 0.05}; the rates must sum to at most 1."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; use {', '.join(KINDS)}")
        rates[kind] = float(value)
    if sum(rates.values()) > 1:
        raise ValueError("fault rates add up to more than 1")
    return rates


@dataclass
class FaultSettings:
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: str = "1"  # Retry-After of drawn 429/503 faults (seconds)


class FaultInjector:
    """Pure ASGI middleware in front of the chat paths."""

    def __init__(self, app: Any, settings: FaultSettings, prefix: str) -> None:
        self.app, self.settings = app, settings
        self.paths = {prefix + p for p in CHAT_PATHS}
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()

    def _draw(self) -> str | None:
        with self._lock:
            roll = self._rng.random()
        for kind, rate in self.settings.rates.items():
            if roll < rate:
                return kind
            roll -= rate
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"x-hl-fault")
        fault = header.decode() if header else self._draw()
        if not fault:
            await self.app(scope, receive, send)
            return
        kind, _, arg = fault.partition(":")
        if kind in ("500", "503", "429"):
            await _error(send, int(kind), arg or (self.settings.retry_after if kind != "500" else ""))
        elif kind == "slow":
            await asyncio.sleep(float(arg or 1000) / 1000)
            await self.app(scope, receive, send)
        elif kind == "drop":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
            raise DroppedConnection("fault injection: connection dropped")
        elif kind == "cut":
            await self.app(scope, receive, _cutting_send(send, int(arg or 2)))
        else:
            await self.app(scope, receive, send)


async def _error(send: Any, status: int, retry_after: str) -> None:
    messages = {500: "injected fault: internal error", 503: "injected fault: overloaded",
                429: "injected fault: rate limited"}
    body = json.dumps({"detail": {"type": "injected_fault", "message": messages[status], "code": status,
                                  "origin": "Humanloop"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _cutting_send(send: Any, events: int) -> Any:
    """Pass the first ``events`` body chunks of a stream, then drop the connection."""
    sent = 0

    async def cutting(message: dict[str, Any]) -> None:
        nonlocal sent
        if message["type"] == "http.response.body" and message.get("body"):
            if sent >= events:
                raise DroppedConnection("fault injection: stream cut")
            sent += 1
        await send(message)

    return cutting
