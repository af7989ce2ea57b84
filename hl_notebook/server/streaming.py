"""SSE framing for streamed chat responses (spec §7; decisions table).

Why: the SDKs read the body line by line and keep only ``data: `` lines, so each event must be one
line of JSON followed by a blank line; the stream ends by closing, with no ``[DONE]``.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from fastapi.responses import StreamingResponse


def frame(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def sse_response(events: Iterable[dict[str, Any]]) -> StreamingResponse:
    def body() -> Iterator[bytes]:
        for event in events:
            yield frame(event)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
