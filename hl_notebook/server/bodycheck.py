"""JSON values no schema refuses but nothing can store or send back: non-finite numbers and lone surrogates.

Why: Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e400`` (pitfall 16) and ``"\\ud800"``
(pitfall 17), and pydantic takes them; they fail only when the response or the SQLite row is
encoded — after the log was stored, or in the middle of a stream. Every request body is checked
here, after the API key and before the schema, so such a body is a 422 and nothing is stored.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterator

from fastapi import Request
from fastapi.exceptions import RequestValidationError

MAX_ITEMS = 20  # a body full of NaN gets this many items, not one per value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bad_values(value: Any, loc: list[str | int]) -> Iterator[dict[str, Any]]:
    """Validation items (loc/msg/type) for every non-finite number and lone surrogate in ``value``.

    A bad object key cannot be named in ``loc`` (the 422 body could not be encoded), so its item
    points at the object that holds it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        yield {"loc": loc, "msg": "Input should be a finite number (NaN and Infinity are not JSON numbers)",
               "type": "finite_number"}
    elif isinstance(value, str):
        if not _encodable(value):
            yield {"loc": loc, "msg": "Input should be a valid Unicode string (it has a lone surrogate)",
                   "type": "string_unicode"}
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _encodable(key):
                yield {"loc": loc, "msg": "Object keys should be valid Unicode strings (one has a lone surrogate)",
                       "type": "string_unicode"}
            else:
                yield from bad_values(item, [*loc, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from bad_values(item, [*loc, index])


def check_values(value: Any) -> None:
    """Raise a RequestValidationError (answered as 422) if ``value`` holds a bad value anywhere."""
    try:  # the common case in one pass of C code; walk only to say where
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        items = []
        for item in bad_values(value, ["body"]):
            items.append(item)
            if len(items) == MAX_ITEMS:
                break
        if items:
            raise RequestValidationError(items) from None


async def check_body(request: Request) -> None:
    """Router dependency (listed after the API-key check, so a 401 still comes first).

    FastAPI has parsed the body by now, so ``request.json()`` returns its cached value; a body
    that is not JSON is left to FastAPI's own 422.
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    try:
        value = await request.json()
    except ValueError:
        return
    check_values(value)
