"""Client-side ``{{var}}`` checks, done before any network call.

Why: a missing template variable should fail in the notebook with the names listed, not after a
round trip; the rules are the server's (spec §5.1), imported so both sides agree by construction.
"""
from __future__ import annotations

from typing import Any, Iterable

from .errors import MissingInputError
from .server.templating import render_message, variables

__all__ = ["check_inputs", "render", "variables"]


def check_inputs(messages: Iterable[dict[str, Any]], inputs: dict[str, Any]) -> None:
    """Raise MissingInputError listing every variable with no value in ``inputs``."""
    missing = [name for name in variables(messages) if name not in inputs]
    if missing:
        raise MissingInputError(missing)


def render(messages: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
    return [render_message(m, inputs) for m in messages]
