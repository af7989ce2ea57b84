"""A fast path for the one request that must be cheap: an authorised, valid, non-streamed chat POST.

Why: under load the layers every request passes before reaching a route — Starlette's error and
exception middleware, FastAPI's telemetry, body-limit and exit-stack middleware, our two
middlewares, the router's matching and the route's request/response wrapper — were about a fifth
of the event loop's CPU per chat call (py-spy under a 1,000-call sweep; ``bench/README.md``), as
much as the chat's own work. ``ChatServerApp`` answers that request itself with what those layers
would do for it (count it, bound its body, turn an exception into the app's own error response)
and hands every other request — another path or method, no or a wrong key, another content type,
an empty, oversized, unparsable, invalid or streamed body, a client that left — to the full
FastAPI stack, replaying the body bytes it already read, so every answer but the fast one is
FastAPI's as before. The fast path is off when anything else would have to see the request: fault
injection, dependency overrides (tests), a middleware this module does not know, a ``root_path``,
or FastAPI's OpenTelemetry being configured.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .direct_route import valid_body
from .limits import BodySizeLimit
from .stats import CountChatRequests

Endpoint = Callable[[Request, Any], Awaitable[Any]]
KNOWN_MIDDLEWARE = (BodySizeLimit, CountChatRequests)  # what the fast path does itself


class ChatServerApp(FastAPI):
    """The server's FastAPI app, with the chat fast path in front of its middleware stack."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast_routes: dict[str, tuple[Endpoint, type[BaseModel]]] = {}  # path -> (endpoint, body model)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = self.fast_routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or not self._fast_path_open(scope):
            await super().__call__(scope, receive, send)
            return
        await self._fast(scope, receive, send, *route)

    def _fast_path_open(self, scope: dict[str, Any]) -> bool:
        if self.dependency_overrides or self.root_path or scope.get("root_path"):
            return False
        if any(m.cls not in KNOWN_MIDDLEWARE for m in self.user_middleware):
            return False
        telemetry = getattr(self, "_native_telemetry", None)
        return telemetry is None or not telemetry.enabled()

    async def _fast(self, scope: dict[str, Any], receive: Any, send: Any, endpoint: Endpoint,
                    body_type: type[BaseModel]) -> None:
        received: list[dict[str, Any]] = []  # replayed to the full stack when it answers instead
        body = await self._read_body(scope, receive, received)
        model = None if body is None else valid_body(self, scope, body, body_type)
        if model is None or getattr(model, "stream", False):
            await super().__call__(scope, _replaying(received, receive), send)
            return
        scope["app"] = self  # as Starlette sets it: ``request.app``
        request = Request(scope, receive)
        counters = self.state.counters
        counters.enter()
        try:
            try:
                response = await endpoint(request, model)
            except Exception as exc:
                try:
                    response = await self._error_response(request, exc)
                except _Unhandled as unhandled:
                    if unhandled.response is not None:
                        await unhandled.response(scope, receive, send)
                    raise exc from None
            await response(scope, receive, send)
        finally:
            counters.leave()

    async def _read_body(self, scope: dict[str, Any], receive: Any, received: list[dict[str, Any]]) -> bytes | None:
        """The whole body; None when the full stack must see the request (a body over the limit,
        or a length that says so: BodySizeLimit answers it; a client that left)."""
        limit = next((m.kwargs["max_bytes"] for m in self.user_middleware if m.cls is BodySizeLimit), None)
        if limit is not None:
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > limit:
                        return None
                    break
        chunks, size = [], 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _error_response(self, request: Request, exc: Exception) -> Any:
        """The app's own handler's response for ``exc``, as Starlette's exception middlewares pick it
        (the class's nearest registered base); re-raised when no handler takes it."""
        handlers = self.exception_handlers
        handler = handlers.get(exc.status_code) if isinstance(exc, StarletteHTTPException) else None
        if handler is None:
            handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
        if handler is None or handler is handlers.get(Exception):
            # ServerErrorMiddleware's part: the 500 handler answers, and the error still reaches the
            # server, which logs it with its traceback
            response = await handler(request, exc) if handler is not None else None
            raise _Unhandled(response) from exc
        return await handler(request, exc)


class _Unhandled(Exception):
    """An exception no specific handler takes, with the app's 500 response for it (if it has one)."""

    def __init__(self, response: Any) -> None:
        super().__init__()
        self.response = response


def _replaying(received: list[dict[str, Any]], receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``receive`` that first gives back the messages the fast path already took."""
    pending = list(received)

    async def replay() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
