"""A fake OpenAI with a rate limit per key: R requests per sliding window of W seconds, 429 beyond.

Why: the per-key limiter (``hl_notebook/server/ratelimit.py``) is only believable against an upstream
that counts like a provider does and refuses the request over its quota, over real HTTP. The
answers are ``openai_server``'s (it is keyless: any key is taken, and each key has its own window).

A refused request is not counted (as providers do not count it) and gets ``Retry-After``: the
seconds until the oldest request of its window leaves it, with millisecond precision so that a
time-scaled window (20 requests per second standing for 20 per minute) can be honoured; real APIs
round up to whole seconds, which the server reads the same way.
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes import openai_server

ANSWER_PATH = "/v1/chat/completions"


@dataclass
class SlidingWindow:
    """At most ``limit`` requests per key in any ``window`` seconds; what was let in and refused, per key."""

    limit: int
    window: float = 60.0
    sent: dict[str, collections.deque[float]] = field(default_factory=lambda: collections.defaultdict(collections.deque))
    accepted: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)

    def admit(self, key: str, now: float | None = None) -> float | None:
        """None when the request is let in (and counted), else the seconds until one would be."""
        now = time.monotonic() if now is None else now
        times = self.sent[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            self.refused[key] += 1
            return times[0] + self.window - now
        times.append(now)
        self.accepted[key] += 1
        return None


def create_app(quota: SlidingWindow) -> FastAPI:
    """``openai_server``'s keyless fake behind ``quota``; the bearer token names the key."""
    app = openai_server.create_app(None)
    app.state.quota = quota

    @app.middleware("http")
    async def over_quota(request: Request, call_next: Any) -> Any:
        if request.url.path != ANSWER_PATH:
            return await call_next(request)
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        wait = quota.admit(key)
        if wait is None:
            return await call_next(request)
        seconds = math.ceil(max(wait, 0.001) * 1000) / 1000
        body = {"error": {"message": f"Rate limit reached: {quota.limit} requests per {quota.window:g} s",
                          "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
        return JSONResponse(body, status_code=429, headers={"Retry-After": f"{seconds:.3f}"})

    return app
