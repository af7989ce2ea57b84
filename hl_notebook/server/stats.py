"""Request counters for the chat endpoints: in flight now, the most at once, and the total.

Why: a sweep's concurrency bound and the server's behaviour under load are claims to be checked
from the server's side; ``GET /v4/server-stats`` reports them and ``POST /v4/server-stats/reset``
starts a new measurement.
"""
from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, Request

from .auth import require_api_key
from .faults import CHAT_PATHS


class ChatCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.in_flight = 0
            self.max_in_flight = 0
            self.requests = 0

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.requests += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight, "requests": self.requests}


class CountChatRequests:
    """Pure ASGI middleware: counts a chat request from arrival until its response is complete."""

    def __init__(self, app: Any, counters: ChatCounters, prefix: str) -> None:
        self.app, self.counters = app, counters
        self.paths = {prefix + p for p in CHAT_PATHS}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        self.counters.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.counters.leave()


router = APIRouter(dependencies=[Depends(require_api_key)], tags=["Server"])


@router.get("/server-stats")
def server_stats(request: Request) -> dict[str, Any]:
    """The chat counters, and per provider key its budget and pacing (``provider_limits``, ratelimit.py);
    with several workers, every worker's counts added up (``workers.StatsPublisher``)."""
    state = request.app.state
    if state.stats_publisher:
        return state.stats_publisher.totals()
    return {**state.counters.snapshot(), "provider_limits": state.provider_limiter.snapshot()}


@router.post("/server-stats/reset")
def reset_stats(request: Request) -> dict[str, Any]:
    state = request.app.state
    if state.stats_publisher:  # every worker resets within workers.PUBLISH_INTERVAL
        state.stats_publisher.reset()
    else:
        state.counters.reset()
        state.provider_limiter.reset()
    return server_stats(request)
