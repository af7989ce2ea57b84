"""Request-body size limit (decisions table: 413 ``{"detail": "request body too large"}``).

Why: a single shared server must not buffer arbitrarily large bodies; checked as bytes arrive, so a
missing or lying Content-Length does not get around it.
"""
from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

TOO_LARGE = json.dumps({"detail": "request body too large"}).encode()


def _too_large() -> HTTPException:
    # FastAPI passes HTTPException from body reading through unchanged: our handler answers 413
    return HTTPException(status_code=413, detail="request body too large")


class BodySizeLimit:
    """Pure ASGI middleware (no per-request task overhead as with BaseHTTPMiddleware)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        received = 0

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large()
            return message

        await self.app(scope, counted_receive, send)

    @staticmethod
    async def _reject(send: Any) -> None:
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(TOO_LARGE)).encode())]})
        await send({"type": "http.response.body", "body": TOO_LARGE})
