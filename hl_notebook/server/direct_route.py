"""A route class for the chat endpoints: a valid, authorised JSON body goes straight to the endpoint.

Why: FastAPI's generic request handler — dependency solving and its bookkeeping, body validation
through a TypeAdapter per field — was ~25 % of a chat request's CPU on the event loop (cProfile of
the app in process; py-spy under load agreed), more than the chat's own work. For the one request
that matters for speed, a JSON body with the right key that validates, ``DirectRoute`` checks the
key, parses, checks values (``bodycheck``) and validates the body model itself, then calls the
endpoint. Anything else — no or a wrong key, another content type, an empty, unparsable or invalid
body — is handed to FastAPI's own handler unchanged, so every error (its status, its order: 401
before 422, its body) is FastAPI's as before. The route's dependencies still declare the security
scheme and the body schema in the OpenAPI document.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Coroutine, get_type_hints

from fastapi import HTTPException, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from .auth import API_KEY_HEADER, valid_key
from .bodycheck import check_values

JSON_BYTES = b"application/json"
_KEY_HEADER = API_KEY_HEADER.model.name.lower().encode()


class DirectRoute(APIRoute):
    """An ``APIRoute`` for endpoints ``async def f(request: Request, body: SomeModel) -> Response``."""

    body_type: type[BaseModel]  # the endpoint's ``body`` model

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        endpoint = self.endpoint
        body_type = self.body_type = get_type_hints(endpoint)["body"]

        async def handler(request: Request) -> Response:
            # dependency overrides (tests) apply only in FastAPI's handler: with any, every request goes there
            body = None if request.app.dependency_overrides else await _valid_body(request, body_type)
            if body is None:
                return await standard(request)
            return await endpoint(request, body)

        return handler


async def _valid_body(request: Request, body_type: type[BaseModel]) -> BaseModel | None:
    """The validated body of an authorised JSON request; None for anything FastAPI should answer."""
    if not authorised_json(request.app, request.scope):
        return None
    try:
        raw = await request.body()  # cached on the request: FastAPI's handler reads the same bytes
    except HTTPException:  # the body-size limit's 413, raised as FastAPI would raise it
        raise
    except Exception:  # noqa: BLE001 - FastAPI's handler turns it into its own 400
        return None
    return _validated(raw, body_type)


def valid_body(app: Any, scope: dict[str, Any], raw: bytes, body_type: type[BaseModel]) -> BaseModel | None:
    """``_valid_body`` for an ASGI scope whose body was read already (``fast_path.py``)."""
    return _validated(raw, body_type) if authorised_json(app, scope) else None


def authorised_json(app: Any, scope: dict[str, Any]) -> bool:
    """Whether the request says its body is JSON and carries the server's key (each header's first
    value, as Starlette's ``Headers.get`` reads it)."""
    content_type = key = None
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value
        elif name == _KEY_HEADER and key is None:
            key = value
    return content_type == JSON_BYTES and key is not None and valid_key(app.state.settings.api_key, key.decode("latin-1"))


def _validated(raw: bytes, body_type: type[BaseModel]) -> BaseModel | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
        check_values(value)
        return body_type.model_validate(value)
    except Exception:  # noqa: BLE001 - not JSON, a bad value, or invalid: FastAPI's handler says which
        return None
