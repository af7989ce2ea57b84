"""Secrets: a masking wrapper, key look-up from the environment, and redaction of text and bodies.

Why: ``str(exc)`` and outputs are saved into notebooks; every message, repr and stored body passes
through ``redact`` so that no Humanloop or provider key can end up in a shared ``.ipynb``.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any

# provider_api_keys slot (spec §1) -> the environment variable a user usually sets for it
PROVIDER_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "cohere": "COHERE_API_KEY",
    "ai21": "AI21_API_KEY",
    "openai_azure": "AZURE_OPENAI_API_KEY",
    "openai_azure_endpoint": "AZURE_OPENAI_ENDPOINT",
}
MASK = "***"
_SECRET_FIELDS = re.compile(r"(?i)^(x-api-key|api[_-]?key|authorization|provider_api_keys|.*_api_key)$")
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,})")

_known: set[str] = set()
_lock = threading.Lock()


class Secret:
    """A string that never shows itself in ``repr``/``str``; ``reveal()`` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def remember(value: str | None) -> None:
    """Register a key so ``redact`` removes it wherever it appears later."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def provider_keys_from_env() -> dict[str, Secret]:
    """The body's ``provider_api_keys`` from the usual environment variables, wrapped (and so
    remembered for redaction) until the client encodes the body."""
    return {slot: Secret(os.environ[var]) for slot, var in PROVIDER_KEY_ENV.items() if os.environ.get(var)}


def redact(value: Any) -> Any:
    """Text with known keys masked, or a dict/list copy with secret fields and known keys masked."""
    if isinstance(value, str):
        with _lock:
            known = sorted(_known, key=len, reverse=True)
        for key in known:
            if key in value:
                value = value.replace(key, MASK)
        return _KEY_SHAPES.sub(MASK, value)
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _SECRET_FIELDS.match(k) and v else redact(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def reveal(value: Any) -> Any:
    """``json.dumps(default=reveal)``: a Secret's value at the moment of encoding, nowhere earlier."""
    if isinstance(value, Secret):
        return value.reveal()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
