"""One chat call from ChatSpec to CallResult: build the body, send (or stream), time it, keep errors.

Why: a failed call is data, not an exception, so sweeps never lose a row; the single-call front
ends decide afterwards whether to raise. Streaming keeps every delta, so a broken stream still
yields its partial text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from .client import HLClient
from .errors import HLError, HLStreamError
from .spec import ChatSpec, build_body
from .stream import StreamAssembler

# on_delta(call index, sample index, text delta) — the magic and panel draw streams with it
DeltaCallback = Callable[[int, int, str], None]


@dataclass
class CallResult:
    """What one call produced: the response (possibly partial) and/or the error, with timing."""

    call: int
    spec: ChatSpec
    response: dict[str, Any] | None = None
    error: HLError | None = None
    latency_s: float | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(client: HLClient, spec: ChatSpec, call: int = 0, *, provider_api_keys: dict[str, str] | None = None,
            on_delta: DeltaCallback | None = None, cancelled: Callable[[], bool] = lambda: False) -> CallResult:
    """Run ``spec`` once. Never raises HLError: it is returned on the result with any partial output."""
    result = CallResult(call, spec)
    body = build_body(spec, provider_api_keys)
    start = time.perf_counter()
    assembler = StreamAssembler() if spec.stream else None
    try:
        if assembler is None:
            result.response = client.chat(spec.path, body, cancelled)
        else:
            for event in client.chat_stream(spec.path, body, cancelled):
                index, delta = assembler.add(event)
                if on_delta and delta:
                    on_delta(call, index, delta)
            result.response = assembler.response()
            if len(assembler.finals) < spec.num_samples:
                raise HLStreamError(f"POST {spec.path}: the stream ended before every sample finished; "
                                    "partial output kept")
    except HLError as exc:
        result.error = exc
        if assembler is not None and assembler.texts:
            result.response = assembler.response()
            if isinstance(exc, HLStreamError) and not exc.partial:
                exc.partial = assembler.partial_text()  # errors.py: ``partial`` keeps the text received
    result.latency_s = time.perf_counter() - start
    return result
