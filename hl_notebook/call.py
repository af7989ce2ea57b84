"""Stage 3, call: one ChatSpec to one CallResult — build the body, send (or stream), time it, keep errors.

Why: a failed call is data, not an exception, so sweeps never lose a row; the front ends decide
afterwards (``pool.Run``) whether to raise. Streaming keeps every delta, so a broken stream still
yields its partial text. Each call carries an idempotency key, kept in its spec (and so in the
frame's ``request`` column): a retry of a call that ran is answered from the server's record.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from .errors import HLError, HLInternalError, HLStreamError, HLUsageError
from .plan import unfilled
from .spec import ChatSpec, build_body
from .stream import StreamAssembler

if TYPE_CHECKING:
    from .connection import Connection

# on_delta(call index, sample index, text delta) — the magic and panel draw streams with it
DeltaCallback = Callable[[int, int, str], None]


def call_keys(count: int) -> list[str]:
    """``count`` Idempotency-Keys, each what ``uuid.uuid4().hex`` gives (random, version 4, RFC 4122
    variant), from one read of the system's random source: uuid4 reads it once per key, ~3.7 us
    each, which for a 1,000-call sweep was ~4 ms before its first request."""
    raw = os.urandom(16 * count)
    keys = []
    for start in range(0, 16 * count, 16):
        value = int.from_bytes(raw[start:start + 16], "big")
        value = (value & _NOT_VERSION_OR_VARIANT) | _VERSION_4_VARIANT  # as uuid.UUID(version=4) sets them
        keys.append(f"{value:032x}")
    return keys


_NOT_VERSION_OR_VARIANT = ~((0xc000 << 48) | (0xf000 << 64))
_VERSION_4_VARIANT = (0x8000 << 48) | (4 << 76)


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


def execute(connection: "Connection", spec: ChatSpec, call: int = 0, *, on_delta: DeltaCallback | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> CallResult:
    """Run ``spec`` once. Never raises (bar KeyboardInterrupt): any failure is the result's error,
    kept with whatever output arrived. An unexpected exception becomes ``HLInternalError``."""
    if spec.call_key is None:
        spec = spec.with_key(uuid.uuid4().hex)
    result = CallResult(call, spec)
    assembler = StreamAssembler() if spec.stream else None
    start = time.perf_counter()
    try:
        _send(connection, spec, result, assembler, on_delta, cancelled)
    except HLError as exc:
        _keep_partial(result, exc, assembler)
    except Exception as exc:  # noqa: BLE001 - a bug must cost one row, never the sweep
        error = HLInternalError(f"unexpected {type(exc).__name__} while running this call: {exc}")
        error.__cause__ = exc
        _keep_partial(result, error, assembler)
    result.latency_s = time.perf_counter() - start
    return result


def _send(connection: "Connection", spec: ChatSpec, result: CallResult, assembler: StreamAssembler | None,
          on_delta: DeltaCallback | None, cancelled: Callable[[], bool]) -> None:
    empty = unfilled(spec)
    if empty:
        raise HLUsageError(f"template variable{'s' if len(empty) > 1 else ''} {', '.join(empty)} "
                           "empty (None/NaN) in this row's inputs; nothing was sent")
    body = build_body(spec, connection.provider_api_keys)  # keys stay Secret objects until encoded
    client = connection.client
    if assembler is None:
        result.response = client.chat(spec.path, body, cancelled, idempotency_key=spec.call_key)
        return
    for event in client.chat_stream(spec.path, body, cancelled, idempotency_key=spec.call_key):
        index, delta = assembler.add(event)
        if on_delta and delta:
            on_delta(result.call, index, delta)
    result.response = assembler.response()
    if len(assembler.finals) < spec.num_samples:
        raise HLStreamError(f"POST {spec.path}: the stream ended before every sample finished; "
                            "partial output kept")


def _keep_partial(result: CallResult, error: HLError, assembler: StreamAssembler | None) -> None:
    result.error = error
    if assembler is not None and assembler.texts:
        result.response = assembler.response()
        if isinstance(error, HLStreamError) and not error.partial:
            error.partial = assembler.partial_text()  # errors.py: ``partial`` keeps the text received
