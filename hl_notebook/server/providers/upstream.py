"""The HTTP plumbing the pass-through providers share: one upstream endpoint per call.

Why: OpenAI and Anthropic differ in body shapes, not in how a call travels — per-thread sessions
(pitfall 7), timeouts, key lookup, status mapping onto spec §8, SSE reading (``wire.sse_data``),
key redaction, and pacing each request under its key's budget (``ratelimit.py``, with the retry
of an upstream 429). Both provider modules import this one and neither imports the other.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError

from hl_notebook.server.providers.base import ProviderCall, ProviderError
from hl_notebook.server.ratelimit import BudgetExhausted, WaitCancelled, estimate_tokens, reported_tokens
from hl_notebook.wire import parse_retry_after, sse_data

if TYPE_CHECKING:
    from hl_notebook.server.ratelimit import KeyLimiter, ProviderLimiter

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 120.0  # seconds without a byte from the upstream; --upstream-timeout, other.timeout
MAX_TIMEOUT = 3600.0  # other.timeout above this is refused (and huge floats overflow socket timeouts)
MAX_RATE_LIMIT_RETRIES = 10  # upstream 429s one request is sent again after (within its wait bound)
# the longest a request waits for its key's budget (less when its read timeout is shorter): a 429 with
# Retry-After must reach a notebook well before the client's own call deadline (120 s) cuts the call
# into a timeout row that is not retried
MAX_SLOT_WAIT = 60.0
CONTROL_KEYS = frozenset({"base_url", "timeout"})  # ours, never sent upstream (nor mock_*)
# error types an upstream may put in a mid-stream error event -> (our status, our type)
STREAM_ERRORS = {
    "rate_limit_error": (429, "rate_limit_error"),
    "overloaded_error": (503, "service_unavailable"),
    "authentication_error": (401, "authentication_error"),
    "invalid_request_error": (422, "unprocessable_entity_error"),
}
GENERIC_NOT_FOUND = frozenset({"not found", "file not found", "method not allowed"})  # a route, not a model

SURROGATE = re.compile("[\ud800-\udfff]")


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


def count(usage: dict[str, Any], key: str) -> int | None:
    """A token count the upstream reported under ``key``; None when it did not (absent, null,
    negative or not an integer): an unknown count stays unknown, never a guess."""
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def total(counts: list[int | None]) -> int | None:
    """The sum of per-call counts, or None when any call's count is unknown (a partial sum would
    read as the call's total)."""
    return None if any(c is None for c in counts) else sum(counts)  # type: ignore[arg-type]


def gather(calls: list[Callable[[], T]]) -> list[T]:
    """Run ``calls`` at once on threads of their own and return their results in order; the first
    failure (in order) is raised after all have ended.

    Why: extra samples an upstream did not return (it ignored ``n``) are asked for in ``n=1`` calls,
    and waiting for them one after another would multiply the call's latency. Each thread has its
    own session (pitfall 7).
    """
    if len(calls) == 1:
        return [calls[0]()]
    with ThreadPoolExecutor(max_workers=min(len(calls), 8), thread_name_prefix="upstream") as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def _shut(sock: socket.socket | None) -> None:
    """Wake whatever thread is blocked on ``sock`` (a ``shutdown``, unlike ``close``, does)."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Upstreams:
    """The upstream connections of one app: their default read timeout, and the switch that cuts
    every one of them when the app stops.

    Why: a model server that accepted a request and never answers holds a chat worker thread in
    ``recv``; uvicorn waits for running requests before it ends the app, so SIGTERM hung for as long
    as the upstream did. ``cancel()`` shuts every socket these sessions opened, which wakes those
    threads at once; their calls end as logged ``upstream_cancelled`` errors.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, limiter: ProviderLimiter | None = None) -> None:
        self.timeout = timeout
        self.limiter = limiter  # budgets per provider key (--provider-limits); None: nothing is paced
        self.cancelled = threading.Event()
        self._connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._local = threading.local()

    def session(self) -> requests.Session:
        """This thread's session (pitfall 7: Session is not documented thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            adapter = _TrackingAdapter(self._track)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session

    def limit_for(self, provider: str, key: str | None) -> KeyLimiter | None:
        """The pacing of ``provider`` calls made with ``key`` (None: not limited, e.g. keyless calls)."""
        return self.limiter.for_key(provider, key) if self.limiter is not None else None

    def cancel(self) -> None:
        """Cut every upstream connection, and end every wait for a rate slot, now and from now on
        (idempotent)."""
        with self._lock:
            self.cancelled.set()
            connections = list(self._connections)
        for connection in connections:
            _shut(connection.sock)
        if self.limiter is not None:
            self.limiter.wake()

    def _track(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.add(connection)
            if not self.cancelled.is_set():
                return
        _shut(connection.sock)


class _TrackingAdapter(HTTPAdapter):
    """An adapter whose connections report themselves, once connected, to ``track``."""

    def __init__(self, track: Callable[[HTTPConnection], None]) -> None:
        self._on_connect = track
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        track = self._on_connect

        class Connection(HTTPConnection):
            def connect(self) -> None:
                super().connect()
                track(self)

        class TLSConnection(HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                track(self)

        class Pool(HTTPConnectionPool):
            ConnectionCls = Connection

        class TLSPool(HTTPSConnectionPool):
            ConnectionCls = TLSConnection

        self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}


DEFAULT_UPSTREAMS = Upstreams()  # providers built without an app (direct use, tests)


def extra_params(other: dict[str, Any]) -> dict[str, Any]:
    """``config.other`` minus our own control keys: what goes upstream as extra body fields."""
    return {k: v for k, v in other.items() if k not in CONTROL_KEYS and not k.startswith("mock_")}


def resolve_key(call: ProviderCall, provider: str, env: str, origin: str, *, required: bool = True) -> str | None:
    """The per-call key, else the server's env var.

    A missing key is the caller's 401 only when ``required`` (the provider's own public URL); a
    local or self-hosted server at another base URL may need none, and then none is sent.
    """
    key = call.api_keys.get(provider) or os.environ.get(env)
    if not key and required:
        raise ProviderError(f"no {origin} API key: pass provider_api_keys.{provider}, or set {env} where the "
                            "server runs (a server at another other.base_url may need none)",
                            status=401, type="authentication_error", origin=origin)
    return key or None


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


def public_url(url: str) -> str:
    """``url`` as it may be shown: without user:password@ and query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _cause(exc: BaseException) -> str:
    """Why a connection failed, in a few words."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {CONNECT_TIMEOUT:g} s"
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "resolve" in text:
        return "unknown host"
    return type(exc).__name__


def _timed_out(exc: BaseException) -> bool:
    """A read timeout, also when requests wraps urllib3's inside a ConnectionError (streams)."""
    return isinstance(exc, requests.ReadTimeout) or any(isinstance(a, ReadTimeoutError) for a in exc.args)


@dataclass(frozen=True)
class Upstream:
    """One provider endpoint for one call: where to POST, how to authenticate, what to redact.

    Every failure leaves here as a ProviderError whose message has the key replaced by ``***``.
    How a failed connection is answered (docs/v4-decisions.md): unreachable -> 502
    ``upstream_unreachable``, nothing received for ``read_timeout`` seconds -> 504
    ``upstream_timeout``, cut by the server's shutdown -> 502 ``upstream_cancelled``. None of them is
    a 503: the client retries 503s, and retrying a model server that is down only costs seconds and
    logs.
    """

    url: str
    headers: dict[str, str] = field(repr=False)  # hold the key: keep both out of reprs and tracebacks
    key: str | None = field(repr=False)
    origin: str
    read_timeout: float = DEFAULT_TIMEOUT
    overloaded: frozenset[int] = frozenset({503})  # upstream statuses that mean "busy, retry" -> 503
    route_hint: str = ""  # what to say when the URL names no endpoint (a wrong base URL)
    upstreams: Upstreams = field(default=DEFAULT_UPSTREAMS, repr=False)
    limit: KeyLimiter | None = field(default=None, repr=False)  # the key's budget (Upstreams.limit_for)

    def redact(self, value: Any) -> Any:
        """``value`` (str, or JSON-like nesting) with every occurrence of the key replaced."""
        if not self.key:
            return value
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
        """POST ``body``; returns only a 2xx response (the caller closes it when streaming).

        With a key budget (``limit``), the request first waits for its slot, and an upstream 429
        is sent again once the key's shared pause is over, as long as that stays within
        ``read_timeout`` (at most MAX_SLOT_WAIT) seconds of waiting; past that the call is a 429
        with Retry-After (the client tries again later) instead of an answer that comes too late.
        """
        if self.limit is None:
            return self._send(body, stream)
        return self._paced(self.limit, body, stream)

    def _paced(self, limit: KeyLimiter, body: dict[str, Any], stream: bool) -> requests.Response:
        deadline = time.time() + min(self.read_timeout, MAX_SLOT_WAIT)
        tokens = estimate_tokens(body)
        for attempt in range(MAX_RATE_LIMIT_RETRIES + 1):
            if attempt:
                limit.retried()
            try:
                limit.admit(tokens, deadline, self.upstreams.cancelled)
            except WaitCancelled:
                raise self.cancelled() from None
            except BudgetExhausted as exc:
                raise self.error(f"{self.origin} rate budget of this key ({limit.budget.describe()}, "
                                 f"--provider-limits) has no free slot for {exc.retry_after:.1f} s", 429,
                                 "rate_limit_error", exc.retry_after) from None
            try:
                response = self._send(body, stream)
            except ProviderError as exc:
                limit.release(succeeded=False)
                if exc.status != 429:
                    raise  # its tokens estimate stays spent: the upstream may have worked on it
                limit.settle(tokens, 0)  # refused: it spent nothing
                limit.throttled(exc.retry_after)
                if attempt == MAX_RATE_LIMIT_RETRIES:
                    raise
                continue
            except BaseException:
                limit.release(succeeded=False)
                raise
            if stream:
                _on_close(response, lambda: limit.release(succeeded=True))
            else:
                limit.release(succeeded=True)
            return response
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def settle(self, body: dict[str, Any], usage: Any) -> None:
        """Tell the key's tokens budget what the request with ``body`` really spent (its ``usage``)."""
        if self.limit is not None:
            self.limit.settle(estimate_tokens(body), reported_tokens(usage))

    def fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` and return the decoded JSON answer, its usage told to the key's budget."""
        with self.post(body) as response:
            data = self.json(response)
        self.settle(body, data.get("usage") if isinstance(data, dict) else None)
        return data

    def _send(self, body: dict[str, Any], stream: bool) -> requests.Response:
        if self.upstreams.cancelled.is_set():
            raise self.cancelled()
        try:
            response = self.upstreams.session().post(self.url, json=body, headers=self.headers, stream=stream,
                                                     timeout=(CONNECT_TIMEOUT, self.read_timeout))
        except requests.RequestException as exc:  # refused, DNS, connect or read timeout, cancelled
            raise self.broken(exc, "unreachable") from exc
        if response.status_code >= 400:
            with response:
                raise self.http_error(response)
        return response

    def broken(self, exc: requests.RequestException, what: str) -> ProviderError:
        """A request that failed on the wire: cancelled, timed out, or (``what``) unreachable/broke off."""
        if self.upstreams.cancelled.is_set():
            return self.cancelled()
        where = urlsplit(self.url)
        host = f"{where.hostname}:{where.port}" if where.port else str(where.hostname)
        if _timed_out(exc):
            return self.error(f"{self.origin} at {host} sent nothing for {self.read_timeout:g} s; raise "
                              "other.timeout or the server's --upstream-timeout", 504, "upstream_timeout")
        if what == "unreachable":
            return self.error(f"{self.origin} is unreachable at {host} ({_cause(exc)})", 502, "upstream_unreachable")
        return self.error(f"{self.origin} stream broke off: {type(exc).__name__}")

    def cancelled(self) -> ProviderError:
        return self.error(f"the call to {self.origin} was cancelled: the server is shutting down", 502,
                          "upstream_cancelled")

    def http_error(self, response: requests.Response) -> ProviderError:
        """Map an upstream error status onto ours (spec §8), keeping the upstream's message."""
        status = response.status_code
        given = _error_message(response)
        message = given or f"{self.origin} answered HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in (404, 405) and (given or "").strip().lower() in GENERIC_NOT_FOUND | {""}:
            message = f"{self.origin} answered HTTP {status} for POST {public_url(self.url)}"
            return self.error(f"{message}: {self.route_hint}" if self.route_hint else message,
                              422, "unprocessable_entity_error")
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
        except requests.RequestException as exc:  # the body itself timed out or was cut
            raise self.broken(exc, "broke off") from exc

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
            raise self.broken(exc, "broke off") from exc

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


def _on_close(response: requests.Response, callback: Callable[[], None]) -> None:
    """Run ``callback`` once when ``response`` is closed: a stream holds its concurrency place until then."""
    close = response.close
    pending = [callback]

    def closing() -> None:
        try:
            close()
        finally:
            while pending:
                pending.pop()()

    response.close = closing  # type: ignore[method-assign]


def _error_message(response: requests.Response) -> str | None:
    """``error.message`` (or FastAPI's ``detail``) of an upstream's error body, if there is one."""
    try:
        body = decode_json(response.content)
    except (ValueError, requests.RequestException):
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error", body.get("detail"))
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


def read_timeout(other: dict[str, Any], default: float = DEFAULT_TIMEOUT) -> float:
    """``other.timeout`` (seconds), else ``default`` (the server's ``--upstream-timeout``); a bad
    value is a 422 provider error (a config stored before the schema checked it)."""
    try:
        seconds = timeout_seconds(other.get("timeout"))
    except ValueError as exc:
        raise ProviderError(f"other.timeout {exc}", status=422, type="unprocessable_entity_error") from None
    return default if seconds is None else seconds
