"""The ``X-API-KEY`` check (spec §1; decisions table: 401 with a JSON body).

Why: the server is single-tenant with one key; ``auto_error=False`` lets us send our own 401
body on every FastAPI version, and a constant-time compare avoids leaking the key by timing. It is
``async`` (no I/O), so checking a key never waits for a worker thread.
"""
from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

API_KEY_HEADER = APIKeyHeader(name="X-API-KEY", auto_error=False)


async def require_api_key(request: Request, key: str | None = Security(API_KEY_HEADER)) -> None:
    expected: str = request.app.state.settings.api_key
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="invalid or missing X-API-KEY")
