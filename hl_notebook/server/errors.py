"""Exception handlers that turn every failure into a v4 error body (spec §8, decisions table).

Why: FastAPI's default 422 body echoes the request ``input``, which can hold provider keys; our
bodies carry only ``loc``/``msg``/``type``, every error is JSON, and provider failures use the
``{type, message, code, origin}`` object.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .providers.base import ProviderError
from .store import NotFound

log = logging.getLogger("hl_notebook.server")


class MissingVariables(Exception):
    """Template variables with no value in ``inputs`` (decisions table: 422, one item per name)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class BadRequest(Exception):
    """A body that validates but cannot be served; answered as a 422 at ``loc``."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


def validation_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"detail": [{"loc": list(i["loc"]), "msg": str(i["msg"]), "type": str(i["type"])} for i in items]}


def provider_error_response(exc: ProviderError) -> JSONResponse:
    headers = {"Retry-After": str(int(exc.retry_after + 0.999))} if exc.retry_after is not None else None
    return JSONResponse({"detail": exc.detail()}, status_code=exc.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(list(exc.errors())), status_code=422)

    @app.exception_handler(MissingVariables)
    async def _missing(_: Request, exc: MissingVariables) -> JSONResponse:
        return JSONResponse(validation_body([
            {"loc": ["body", "inputs", name], "msg": f"missing template variable {name!r}", "type": "missing"}
            for name in exc.names]), status_code=422)

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse(validation_body([{"loc": exc.loc, "msg": exc.msg, "type": "value_error"}]),
                            status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ProviderError)
    async def _provider(_: Request, exc: ProviderError) -> JSONResponse:
        return provider_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)
