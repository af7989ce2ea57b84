"""Fault injection for the chat endpoints, off unless the server starts with ``--faults``.

Why: sweeps, retries and the reliability suite must be proven against 500s, 503s, 429s with
``Retry-After``, slow answers, dropped connections and streams cut mid-way — failures a healthy
server never produces — and against the worst of them: a failure *after* the call ran and its log
was stored, where a blind retry records the call twice.

Kinds (header ``X-HL-Fault: KIND[:ARG]`` on one request, or drawn per request, see below):

* before the endpoint runs (nothing is stored for the request):
  ``500``; ``503[:retry_after]``; ``429[:retry_after]``; ``slow:MS`` (wait, then run normally);
  ``drop`` (a 200 status line with a lying Content-Length, then the connection closes);
* while it runs: ``cut[:events]`` passes the first ``events`` (default 2) body chunks of a stream,
  then breaks the connection, which also stops the stream on the server;
* after the endpoint ran to the end (its logs are stored; the client never gets the real answer):
  ``after-500`` (the response is replaced by a 500), ``after-drop`` (the connection closes with no
  response at all), ``after-cut[:events]`` (a stream's first ``events`` chunks, default 2, then the
  connection closes; the stream itself finished on the server), ``after-slow:MS`` (the response is
  held back MS ms, so a client with a shorter read timeout gives up on a call that ran).
  ``after_500`` and the like are accepted too (the spelling of ``--fault-rates``).

Server-wide: ``--fault-rates 500=0.1,429=0.05,after_drop=0.02`` draws at most one fault per chat
request, with ``--fault-retry-after`` seconds on drawn 429/503s. Draws are reproducible per
request, not per arrival order: the n-th request with a given body gets the draw seeded by
(``--fault-seed``, SHA-256 of the body, n), so a concurrent sweep meets the same faults on every run
and its retries (the same body again) get fresh draws.

``after-drop`` and ``after-cut`` close the socket through uvicorn's transport; under another ASGI
server they fall back to ``drop``'s lying Content-Length (the client still gets no usable answer).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

CHAT_PATHS = ("/chat", "/chat-deployed", "/chat-experiment", "/chat-model-config")
BEFORE_KINDS = ("500", "503", "429", "slow", "drop", "cut")
AFTER_KINDS = ("after-500", "after-drop", "after-cut", "after-slow")
KINDS = BEFORE_KINDS + AFTER_KINDS
HASHED_BODY_BYTES = 1 << 20  # a draw hashes at most this much of the body; the rest streams through

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class DroppedConnection(Exception):
    """Raised after a response start with a lying Content-Length: the server closes the socket."""


def fault_kind(name: str) -> str:
    """The canonical name of a fault kind (``after_drop`` -> ``after-drop``); ValueError if unknown."""
    kind = name.strip().replace("_", "-")
    if kind not in KINDS:
        raise ValueError(f"unknown fault {name!r}; use {', '.join(KINDS)}")
    return kind


def parse_rates(text: str) -> dict[str, float]:
    """``"500=0.1,after_drop=0.05"`` -> {"500": 0.1, "after-drop": 0.05}; the rates must sum to at most 1."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        rate = float(value)
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate {part!r} is not between 0 and 1")
        rates[fault_kind(kind)] = rate
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

    def __init__(self, app: Any, settings: FaultSettings, prefix: str,
                 shared_count: Callable[[str], int] | None = None) -> None:
        """``shared_count``: a counter every worker shares (``Store.next_count``), so that with several
        workers the n-th request with a body is the n-th of them all, not of this process."""
        self.app, self.settings, self.shared_count = app, settings, shared_count
        self.paths = {prefix + p for p in CHAT_PATHS}
        self.rates = {fault_kind(kind): rate for kind, rate in settings.rates.items()}
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def draw(self, body: bytes, nth: int | None = None) -> str | None:
        """The fault for the next request with this body (None: no fault); see the module docstring.
        ``nth``: the request's number among those with this body (counted here when not given)."""
        digest = hashlib.sha256(body).hexdigest()
        if nth is None:
            with self._lock:
                nth = self._seen[digest]
                self._seen[digest] += 1
        roll = random.Random(f"{self.settings.seed}:{digest}:{nth}").random()
        for kind, rate in self.rates.items():
            if roll < rate:
                return kind
            roll -= rate
        return None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"x-hl-fault")
        if header:
            fault = header.decode("latin-1")
        elif self.rates:
            body, receive = await _read_body(receive)
            nth = None
            if self.shared_count is not None:
                name = "fault:" + hashlib.sha256(body).hexdigest()
                nth = await asyncio.to_thread(self.shared_count, name) - 1
            fault = self.draw(body, nth)
        else:
            fault = None
        if not fault:
            await self.app(scope, receive, send)
            return
        name, _, arg = fault.partition(":")
        try:
            kind = fault_kind(name)
        except ValueError:  # an unknown header value is no fault: the request runs as usual
            await self.app(scope, receive, send)
            return
        if kind.startswith("after-"):
            await self._after(kind, arg, scope, receive, send)
        else:
            await self._before(kind, arg, scope, receive, send)

    async def _before(self, kind: str, arg: str, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if kind in ("500", "503", "429"):
            await _error(send, int(kind), arg or (self.settings.retry_after if kind != "500" else ""))
        elif kind == "slow":
            await asyncio.sleep(float(arg or 1000) / 1000)
            await self.app(scope, receive, send)
        elif kind == "drop":
            await _lying_start(send)
        else:  # cut
            await self.app(scope, receive, _cutting_send(send, int(arg or 2)))

    async def _after(self, kind: str, arg: str, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Run the endpoint to its end (logs stored), then fail instead of answering."""
        held: list[dict[str, Any]] = []
        passed = 0
        events = int(arg or 2) if kind == "after-cut" else 0

        async def capture(message: dict[str, Any]) -> None:
            nonlocal passed
            if kind == "after-slow":
                held.append(message)
            elif kind == "after-cut" and (message["type"] == "http.response.start" or (
                    passed < events and message.get("more_body") and message.get("body"))):
                passed += message["type"] != "http.response.start"
                await send(message)  # the stream's last message (more_body false) never goes out

        await self.app(scope, receive, capture)
        if kind == "after-500":
            await _error(send, 500, "")
        elif kind == "after-slow":
            await asyncio.sleep(float(arg or 1000) / 1000)
            for message in held:
                await send(message)
        else:  # after-drop, after-cut
            await _close_connection(receive, send, started=kind == "after-cut")


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read the request body (up to HASHED_BODY_BYTES) and a ``receive`` that replays it to the app."""
    messages: list[dict[str, Any]] = []
    size = 0
    while size <= HASHED_BODY_BYTES:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            break
        size += len(message.get("body", b""))
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> dict[str, Any]:
        return messages.pop(0) if messages else await receive()

    return body, replay


async def _error(send: Send, status: int, retry_after: str) -> None:
    messages = {500: "injected fault: internal error", 503: "injected fault: overloaded",
                429: "injected fault: rate limited"}
    body = json.dumps({"detail": {"type": "injected_fault", "message": messages[status], "code": status,
                                  "origin": "Humanloop"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lying_start(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
    raise DroppedConnection("fault injection: connection dropped")


async def _close_connection(receive: Receive, send: Send, started: bool) -> None:
    """Close the client's connection without (more of) a response.

    ASGI has no message for "close without answering" (a server answers 500 to an app that returns
    or raises before starting a response), so under uvicorn the socket is aborted through the
    connection's transport, found on the request task; elsewhere this falls back to ``drop``.
    """
    transport = _uvicorn_transport()
    if transport is None:
        if started:
            raise DroppedConnection("fault injection: connection closed")
        await _lying_start(send)
        return
    transport.abort()
    try:  # uvicorn marks the request disconnected (then it sends no 500 of its own)
        await asyncio.wait_for(_until_disconnect(receive), timeout=10)
    except asyncio.TimeoutError:
        raise DroppedConnection("fault injection: connection closed") from None


def _uvicorn_transport() -> asyncio.BaseTransport | None:
    """The connection transport of uvicorn's request cycle running this task (None elsewhere)."""
    task = asyncio.current_task()
    coro = task.get_coro() if task is not None else None
    frame = getattr(coro, "cr_frame", None)
    cycle = frame.f_locals.get("self") if frame is not None else None
    transport = getattr(cycle, "transport", None)
    return transport if callable(getattr(transport, "abort", None)) else None  # uvloop's are no asyncio.BaseTransport


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _cutting_send(send: Send, events: int) -> Send:
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
