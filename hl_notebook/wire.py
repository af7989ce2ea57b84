"""HTTP wire formats that both the client and the server's pass-through providers parse.

Why: SSE line splitting and ``Retry-After`` have subtle rules (CRLF split across chunks,
pitfall 8; HTTP dates as well as seconds); one implementation keeps both sides agreeing. Pure
standard library, so the client never imports the server to use it.
"""
from __future__ import annotations

import email.utils
import time
from typing import Iterable, Iterator


def sse_data(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The payload of every ``data:`` line, in order, from arbitrarily split byte chunks.

    Lines end at ``\\n`` (a preceding ``\\r`` is dropped); one space after the colon is removed, as
    the SSE standard says; other fields (``event:``, comments) are skipped. Payloads stay bytes
    so a multi-byte character split across chunks is decoded whole by the caller.
    """
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        if b"\n" not in chunk:
            continue
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                yield line[5:].removeprefix(b" ")
    line = buffer.rstrip(b"\r")
    if line.startswith(b"data:"):
        yield line[5:].removeprefix(b" ")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
