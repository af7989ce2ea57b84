"""The HTTP plumbing the pass-through providers share: one upstream endpoint per call.

Why: OpenAI and Anthropic differ in body shapes, not in how a call travels — per-thread sessions
(pitfall 7), timeouts, key lookup, status mapping onto spec §8, SSE reading (``wire.sse_data``),
and key redaction. Both provider modules import this one and neither imports the other.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

import requests

from hl_notebook.server.providers.base import ProviderCall, ProviderError
from hl_notebook.template import text_parts
from hl_notebook.wire import parse_retry_after, sse_data

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 600.0
MAX_TIMEOUT = 3600.0  # other.timeout above this is refused (and huge floats overflow socket timeouts)
CONTROL_KEYS = frozenset({"base_url", "timeout"})  # ours, never sent upstream (nor mock_*)
# error types an upstream may put in a mid-stream error event -> (our status, our type)
STREAM_ERRORS = {
    "rate_limit_error": (429, "rate_limit_error"),
    "overloaded_error": (503, "service_unavailable"),
    "authentication_error": (401, "authentication_error"),
    "invalid_request_error": (422, "unprocessable_entity_error"),
}

SURROGATE = re.compile("[\ud800-\udfff]")

_local = threading.local()


def _finite(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def decode_json(data: bytes | str) -> Any:
    """An upstream's JSON, made storable and sendable: ``NaN``/``Infinity``/``1e400`` become null
    (pitfall 16) and lone surrogates U+FFFD (pitfall 17). Raises ValueError if it is not JSON.

    Why: what a provider sends is echoed in responses (``provider_responses``) and stored in logs;
    one bad value there used to fail the call after its log was written.
    """
    value = json.loads(data, parse_constant=lambda _: None, parse_float=_finite)
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        value = _without_surrogates(value)
    return value


def count(usage: dict[str, Any], key: str, fallback: int) -> int:
    """A token count the upstream reported under ``key``, else ``fallback`` (also when the value is
    null, negative or not an integer)."""
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else fallback


def _session() -> requests.Session:
    """One session per worker thread (pitfall 7: Session is not documented thread-safe)."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def extra_params(other: dict[str, Any]) -> dict[str, Any]:
    """``config.other`` minus our own control keys: what goes upstream as extra body fields."""
    return {k: v for k, v in other.items() if k not in CONTROL_KEYS and not k.startswith("mock_")}


def resolve_key(call: ProviderCall, provider: str, env: str, origin: str) -> str:
    """The per-call key, else the server's env var; a missing key is the caller's 401."""
    key = call.api_keys.get(provider) or os.environ.get(env)
    if not key:
        raise ProviderError(f"no {origin} API key: pass provider_api_keys.{provider} or set {env} on the server",
                            status=401, type="authentication_error", origin=origin)
    return key


def base_url(value: Any) -> str | None:
    """``other.base_url`` (None when unset).

    Raises:
        ValueError: not an http(s) URL string.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def resolve_base(other: dict[str, Any], env: str, default: str) -> str:
    """``other.base_url``, else the server's env var, else the provider's public URL (no trailing /)."""
    try:
        given = base_url(other.get("base_url"))
    except ValueError as exc:
        raise ProviderError(f"other.base_url {exc}", status=422, type="unprocessable_entity_error") from None
    return (given or os.environ.get(env) or default).rstrip("/")


def estimate_tokens(messages: Iterable[dict[str, Any]], outputs: Iterable[str]) -> tuple[int, int]:
    """Whitespace word counts, for upstreams that report no usage (zero would read as "free")."""
    prompt = sum(len(text.split()) for message in messages for text in text_parts(message))
    return prompt, sum(len(text.split()) for text in outputs)


@dataclass(frozen=True)
class Upstream:
    """One provider endpoint for one call: where to POST, how to authenticate, what to redact.

    Every failure leaves here as a ProviderError whose message has the key replaced by ``***``.
    """

    url: str
    headers: dict[str, str] = field(repr=False)  # hold the key: keep both out of reprs and tracebacks
    key: str = field(repr=False)
    origin: str
    read_timeout: float = READ_TIMEOUT
    overloaded: frozenset[int] = frozenset({503})  # upstream statuses that mean "busy, retry" -> 503

    def redact(self, value: Any) -> Any:
        """``value`` (str, or JSON-like nesting) with every occurrence of the key replaced."""
        if isinstance(value, str):
            return value.replace(self.key, "***")
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        return value

    def error(self, message: str, status: int = 502, type: str = "bad_gateway",
              retry_after: float | None = None) -> ProviderError:
        return ProviderError(self.redact(message), status=status, type=type, origin=self.origin,
                             retry_after=retry_after)

    def post(self, body: dict[str, Any], *, stream: bool = False) -> requests.Response:
        """POST ``body``; returns only a 2xx response (the caller closes it when streaming)."""
        try:
            response = _session().post(self.url, json=body, headers=self.headers, stream=stream,
                                       timeout=(CONNECT_TIMEOUT, self.read_timeout))
        except requests.RequestException as exc:  # refused, DNS, connect or read timeout
            parts = urlsplit(self.url)
            host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
            raise self.error(f"{self.origin} is unreachable at {host}", 503, "service_unavailable") from exc
        if response.status_code >= 400:
            with response:
                raise self.http_error(response)
        return response

    def http_error(self, response: requests.Response) -> ProviderError:
        """Map an upstream error status onto ours (spec §8), keeping the upstream's message."""
        status = response.status_code
        message = _error_message(response) or f"{self.origin} answered HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in (401, 403):
            return self.error(message, 401, "authentication_error")
        if status == 429:
            return self.error(message, 429, "rate_limit_error", retry_after)
        if status in (400, 404, 422):
            return self.error(message, 422, "unprocessable_entity_error")
        if status in self.overloaded:
            return self.error(message, 503, "service_unavailable", retry_after)
        return self.error(message, 502, "bad_gateway")

    def json(self, response: requests.Response) -> dict[str, Any]:
        try:
            return decode_json(response.content)
        except ValueError:
            raise self.error(f"{self.origin} answered with a body that is not JSON") from None

    def events(self, response: requests.Response) -> Iterator[dict[str, Any]]:
        """Decoded JSON of each SSE ``data:`` line until ``[DONE]`` or the end of the body.

        Lines are cut from bytes by ``wire.sse_data`` (pitfall 8: CRLF split across chunks). An upstream
        error event or a dropped connection raises ProviderError; a clean early close does not,
        so callers check that every sample finished.
        """
        try:
            for payload in sse_data(response.iter_content(chunk_size=None)):
                if payload.strip() == b"[DONE]":
                    return
                yield self._event(payload)
        except requests.RequestException as exc:
            raise self.error(f"{self.origin} stream broke off: {type(exc).__name__}") from exc

    def _event(self, payload: bytes) -> dict[str, Any]:
        try:
            event = decode_json(payload)
        except ValueError:
            raise self.error(f"{self.origin} sent a stream event that is not JSON") from None
        error = event.get("error") if isinstance(event, dict) else None
        if error is not None:
            kind = error.get("type") if isinstance(error, dict) else None
            status, our_type = STREAM_ERRORS.get(kind, (502, "bad_gateway"))
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise self.error(message or f"{self.origin} stream error", status, our_type)
        return event

    def cut_off(self) -> ProviderError:
        return self.error(f"{self.origin} stream ended before every sample finished")


def _error_message(response: requests.Response) -> str | None:
    """``error.message`` of an OpenAI- or Anthropic-style error body, if there is one."""
    try:
        error = decode_json(response.content).get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict):
        return error.get("message") or None
    return error if isinstance(error, str) and error else None


def timeout_seconds(value: Any) -> float | None:
    """``other.timeout`` as seconds (None when unset).

    Raises:
        ValueError: not a number (booleans included), not positive, or above MAX_TIMEOUT.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise ValueError(f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}")
    return float(value)


def read_timeout(other: dict[str, Any]) -> float:
    """``other.timeout`` (seconds), else the default read timeout; a bad value is a 422 provider error
    (a config stored before the schema checked it)."""
    try:
        seconds = timeout_seconds(other.get("timeout"))
    except ValueError as exc:
        raise ProviderError(f"other.timeout {exc}", status=422, type="unprocessable_entity_error") from None
    return READ_TIMEOUT if seconds is None else seconds
