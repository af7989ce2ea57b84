"""HLClient: the v4 HTTP client — headers, timeouts, retry policy, status -> typed error, streaming.

Why: every front end (magic, sweeps, panel, Python API) talks to the server through this one
object, so retries, error messages and key handling behave the same everywhere.
"""
from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
import urllib3

from .errors import (HLAPIError, HLConfigError, HLConnectionError, HLError, HLServerError, HLStreamError,
                     HLTimeoutError, HLUsageError, describe_body, error_for_status, one_line)
from .secrets import Secret, reveal
from .stream import response_problem, sse_events
from .transport import PlainResponse, PlainTransport
from .wire import parse_retry_after

USER_AGENT = "hl_notebook"
JSON = "application/json"


@dataclass(frozen=True)
class RetryPolicy:
    """Retry connection failures, 429 and 503 only; honour ``Retry-After``.

    Read timeouts and other 5xx are NOT retried on chat POSTs: the server may already have called
    the provider and stored logs, and a retry would record the call twice. A model server that our
    server cannot reach is its 502 ``upstream_unreachable`` (a hung one its 504), so those are not
    retried either: retrying a server that is down cost seconds and a log per attempt
    (docs/v4-decisions.md).
    """

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return min(self.backoff_base * (2 ** attempt), self.backoff_max) * (0.5 + random.random() / 2)


class Throttle:
    """A pause shared by every worker: one 429 slows the whole sweep down instead of each retrying blind."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self.holds = 0  # how many 429/503 answers asked for a pause: sweeps lower their concurrency on it

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)
            self.holds += 1

    def wait(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        while True:
            remaining = self._until - time.monotonic()
            if remaining <= 0 or cancelled():
                return
            time.sleep(min(remaining, 0.2))


class _Deadline:
    """What is left of one call's total time (``HLClient.deadline``; None: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.at = math.inf if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0


class _Watch:
    """One socket to shut down at a deadline, unless released first."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock


class _Watchdog:
    """Shuts down the socket of every call that passes its deadline; one daemon thread for all clients.

    Why: a read timeout restarts with each byte, so SSE comments or a body trickled byte by byte
    would hold a cell for ever; shutting the socket down ends the blocked read wherever it is.
    """

    def __init__(self) -> None:
        # reentrant: release() may run in a stream generator that the garbage collector closes on
        # whatever thread it runs on, this one included while it holds the lock (pitfall 18)
        self._cond = threading.Condition(threading.RLock())
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket | None, at: float) -> _Watch:
        watch = _Watch(sock)
        if sock is None or at == math.inf:
            return watch
        with self._cond:
            if len(self._due) > 1024:  # released watches are dropped lazily
                self._due = [due for due in self._due if due[2].sock is not None]
                heapq.heapify(self._due)
            heapq.heappush(self._due, (at, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hl_notebook-deadlines", daemon=True)
                self._thread.start()
            if self._due[0][2] is watch:
                self._cond.notify()
        return watch

    def release(self, watch: _Watch) -> None:
        """After this returns, the watchdog never touches the socket (it may be reused for the next call)."""
        with self._cond:
            watch.sock = None

    def _run(self) -> None:
        with self._cond:
            while True:
                wait = self._due[0][0] - time.monotonic() if self._due else None
                if wait is None or wait > 0:
                    self._cond.wait(wait)
                    continue
                watch = heapq.heappop(self._due)[2]
                if watch.sock is not None:
                    try:
                        watch.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    watch.sock = None


_WATCHDOG = _Watchdog()


def _socket_of(response: Any) -> socket.socket | None:
    """The socket a response's body is read from (http.client's reader under urllib3, or the plain
    transport's connection), if any."""
    if isinstance(response, PlainResponse):
        return response.plain_socket
    reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
    return getattr(getattr(reader, "raw", None), "_sock", None)


def _retry_after(response: requests.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def _json(response: requests.Response) -> Any:
    """The body of an error response; never raises (a cut or non-JSON body becomes a text detail)."""
    try:
        return response.json()
    except ValueError:
        return {"detail": one_line(response.text[:200]) or f"HTTP {response.status_code}"}
    except requests.exceptions.RequestException:  # a streamed error body cut mid-way
        return {"detail": f"HTTP {response.status_code} (the body was cut off)"}


def _decode(response: requests.Response, method: str, path: str) -> Any:
    """The JSON of a 2xx response. An unreadable one is the server's failure, typed like a 5xx (not a
    bare ValueError), and not retried: the call may already have run."""
    try:
        return response.json()
    except ValueError:
        text = one_line(response.text, 60)
        shown = f"starts {text!r}" if text else "empty"
        raise HLServerError(f"{method} {path} returned {response.status_code} with a body that is not JSON "
                            f"({shown}); the call may have run on the server", status_code=response.status_code,
                            endpoint=path, body=one_line(response.text[:200])) from None


class HLClient:
    """A v4 client for one base URL and key. Thread-safe: one ``requests.Session`` per thread (pitfall 7).

    ``connect_timeout`` and ``read_timeout`` bound each connect and each read. ``deadline`` bounds
    the whole call: connecting, every retry *and the waits between them* (a retry whose wait would
    end past the deadline is not made; the last error is raised instead), and reading the whole body
    or stream. None means no total limit. One gap: response *headers* trickled byte by byte are
    not cut at the deadline (each read is bounded by the time left, their sum is not).
    """

    def __init__(self, base_url: str, api_key: Secret, *, connect_timeout: float = 10.0,
                 read_timeout: float = 300.0, retry: RetryPolicy | None = None,
                 deadline: float | None = 120.0) -> None:
        if deadline is not None and not deadline > 0:
            raise ValueError(f"deadline must be positive or None, not {deadline!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = (connect_timeout, read_timeout)
        self.deadline = deadline
        self.retry = retry or RetryPolicy()
        self.throttle = Throttle()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"HLClient(base_url={self.base_url!r}, api_key='***')"

    def _session(self) -> requests.Session:
        """This thread's session. It holds no key: ``_send`` adds X-API-KEY to each request.

        The environment's proxy and CA-bundle settings are read once, here, not on every request
        (``trust_env`` made requests re-read the proxy variables and look for ``~/.netrc`` per call:
        ~15 % of a sweep's client CPU in a profile). ``~/.netrc`` is not consulted: the v4 API
        authenticates by X-API-KEY only.
        """
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"User-Agent": USER_AGENT, "Accept": JSON})
            session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            session.trust_env = False
            self._local.session = session
            # chat POSTs to a plain-HTTP server no proxy applies to skip requests' layers (transport.py)
            self._local.plain = PlainTransport(self.base_url) if self.base_url.startswith("http://") \
                and not session.proxies else None
        return session

    def _plain(self) -> PlainTransport | None:
        self._session()
        return self._local.plain

    # -- the request loop ----------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
                stream: bool = False, cancelled: Callable[[], bool] = lambda: False,
                headers: dict[str, str] | None = None, plain: bool = False) -> requests.Response:
        """Send with retries; return a 2xx response or raise a typed HLError (message redacted).

        ``body`` may hold ``Secret`` values; it is encoded here as strict JSON, the keys revealed
        only while sending. With ``stream=True`` the deadline covers getting the headers; the
        caller reads the body (``chat_stream`` keeps the deadline on its stream). ``plain`` (not with
        ``stream`` or ``params``) sends over ``transport.PlainTransport`` where it applies.

        Raises:
            HLUsageError: ``body`` holds a value JSON cannot carry (the message names the field);
                nothing was sent.
        """
        deadline = _Deadline(self.deadline)
        response, watch = self._open(method, path, body, params, headers, cancelled, deadline,
                                     plain and not stream and params is None)
        if stream:
            _WATCHDOG.release(watch)
            return response
        error = None
        try:
            response.content  # noqa: B018 - the whole body, read within the deadline
        except requests.exceptions.RequestException as exc:
            error = self._broken(exc, method, path, deadline)
        finally:
            _WATCHDOG.release(watch)
        if error is not None:  # raised out here, unchained: the failure's frames hold the request
            response.close()
            raise error
        return response

    def _open(self, method: str, path: str, body: Any, params: dict[str, Any] | None,
              headers: dict[str, str] | None, cancelled: Callable[[], bool], deadline: _Deadline,
              plain: bool = False) -> tuple[requests.Response, _Watch]:
        """The headers of a 2xx answer, its socket watched until the deadline; retries per policy."""
        url = self.base_url + path
        for attempt in itertools.count():
            self.throttle.wait(lambda: cancelled() or deadline.passed())
            if deadline.passed():
                raise self._too_late(method, path)
            left = deadline.left()
            try:
                response = self._send(method, url, body, params, headers,
                                      (min(self.timeout[0], left), min(self.timeout[1], left)), plain)
            except requests.exceptions.RequestException as exc:
                error, retryable = self._broken(exc, method, path, deadline), _never_sent(exc)
            else:
                watch = _WATCHDOG.watch(_socket_of(response), deadline.at)
                if response.status_code < 400:
                    return response, watch
                error = _refused(response, method, path, self.base_url)
                _WATCHDOG.release(watch)
                retryable = response.status_code in self.retry.retry_statuses
            wait = self.retry.delay(attempt, getattr(error, "retry_after", None))
            if not retryable or attempt >= self.retry.max_retries or cancelled() or wait >= deadline.left():
                raise error
            if isinstance(error, HLAPIError):
                self.throttle.hold(wait)  # every worker waits
            else:
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, body: Any, params: dict[str, Any] | None,
              headers: dict[str, str] | None, timeout: tuple[float, float], plain: bool = False) -> requests.Response:
        """The one frame where keys are in clear: the X-API-KEY header and the body's ``Secret`` values
        exist only as arguments of this call, never as a variable of a caller's frame
        (``%xmode Verbose`` prints the variables of every frame of a traceback into the notebook).

        Raises:
            HLUsageError: from encoding; nothing was sent.
            requests.RequestException: mapped by the caller without chaining (the frames of requests
                and urllib3 hold the clear headers and body).
        """
        transport = self._plain() if plain else None
        try:
            if transport is not None:
                response = transport.send(
                    method, url, None if body is None else _encode(body),
                    {"User-Agent": USER_AGENT, "Accept": JSON, **(headers or {}),
                     **({} if body is None else {"Content-Type": JSON}), "X-API-KEY": self._api_key.reveal()},
                    timeout)
                return response  # type: ignore[return-value]  # keeps no request: nothing to forget
            response = self._session().request(
                method, url, params=params, timeout=timeout, stream=True,
                data=None if body is None else _encode(body),
                headers={**(headers or {}), **({} if body is None else {"Content-Type": JSON}),
                         "X-API-KEY": self._api_key.reveal()})
        except (requests.exceptions.RequestException, HLError):
            raise
        except BaseException as exc:  # Ctrl-C, or a bug below: the frames below this one hold the keys
            exc.__cause__ = exc.__context__ = None
            if isinstance(exc, Exception):
                exc.add_note("hl_notebook: the frames inside requests were removed from this traceback "
                             "(they hold the API keys)")
            raise exc.with_traceback(None)
        _forget_request(response)
        return response

    def _broken(self, exc: requests.exceptions.RequestException, method: str, path: str, deadline: _Deadline,
                stream: bool = False) -> HLError:
        """The HLError for a transport failure; the caller raises it outside its ``except``."""
        if deadline.passed():
            return self._too_late(method, path, stream)
        if _read_timed_out(exc):
            if stream:
                return HLTimeoutError(f"{method} {path}: the stream stalled for {self.timeout[1]:g} s "
                                      "(HLSettings.read_timeout); partial output kept")
            return HLTimeoutError(f"{method} {path}: no answer from {self.base_url} within "
                                  f"{self.timeout[1]:g} s (HLSettings.read_timeout)")
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                            requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader)):
            return HLConfigError(f"cannot send {method} {path} to {self.base_url} ({type(exc).__name__}); "
                                 "check HLSettings.base_url")
        if stream:
            return HLStreamError(f"{method} {path}: the stream broke ({_reason(exc)}); partial output kept")
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return HLConnectionError(f"{method} {path}: the connection closed mid-response; the call "
                                     "may have run on the server, so it is not retried")
        if _never_sent(exc):
            return HLConnectionError(f"cannot reach {self.base_url} ({_reason(exc)}); is the server "
                                     "running? set HLSettings.base_url or HUMANLOOP_BASE_URL")
        return HLConnectionError(f"{method} {path}: the connection dropped ({_reason(exc)}); the "
                                 "call may have run on the server, so it is not retried")

    def _too_late(self, method: str, path: str, stream: bool = False) -> HLTimeoutError:
        kept = "; partial output kept" if stream else ""
        return HLTimeoutError(f"{method} {path}: no complete answer within {self.deadline:g} s "
                              f"(HLSettings.call_deadline){kept}")

    def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return _decode(self.request("POST", path, body, **kwargs), "POST", path)

    def get(self, path: str, **params: Any) -> Any:
        return _decode(self.request("GET", path, params=params or None), "GET", path)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return _decode(self.request("PATCH", path, body), "PATCH", path)

    # -- chat ----------------------------------------------------------------------------------
    def chat(self, path: str, body: dict[str, Any], cancelled: Callable[[], bool] = lambda: False, *,
             idempotency_key: str | None = None) -> dict[str, Any]:
        """One call: the ChatResponse, its shape checked (``stream.response_problem``).

        ``idempotency_key`` is sent as ``Idempotency-Key`` on the POST and on each automatic retry.

        Raises:
            HLServerError: the answer is not JSON or not shaped like a ChatResponse (not retried).
        """
        response = self.request("POST", path, body, cancelled=cancelled, headers=_idempotency(idempotency_key),
                                plain=True)
        result = _decode(response, "POST", path)
        problem = response_problem(result)
        if problem:
            raise HLServerError(f"POST {path} returned {response.status_code} with a malformed ChatResponse: "
                                f"{problem}; the call may have run on the server",
                                status_code=response.status_code, endpoint=path, body=result)
        return result

    def chat_stream(self, path: str, body: dict[str, Any], cancelled: Callable[[], bool] = lambda: False, *,
                    idempotency_key: str | None = None) -> Iterator[dict[str, Any]]:
        """Stream events as dicts, each shape-checked. An error event, a malformed event, a broken
        connection or the deadline raise a typed HLError; the caller's assembler keeps the partial
        text. ``idempotency_key`` as for ``chat``."""
        deadline = _Deadline(self.deadline)
        response, watch = self._open("POST", path, {**body, "stream": True}, None, _idempotency(idempotency_key),
                                     cancelled, deadline)
        error = None
        with response:
            try:
                for event in sse_events(response.iter_content(chunk_size=None)):
                    _check_event(event, path)
                    yield event
            except requests.exceptions.RequestException as exc:
                error = self._broken(exc, "POST", path, deadline, stream=True)
            finally:
                _WATCHDOG.release(watch)
        if error is not None:
            raise error

    # -- management (spec §9) ------------------------------------------------------------------
    def register_config(self, project: str, **config: Any) -> dict[str, Any]:
        return self.post("/model-configs", {"project": project, **config})

    def create_experiment(self, project_id: str, name: str, config_ids: list[str], set_active: bool = False,
                          positive_labels: list[dict[str, str]] | None = None) -> dict[str, Any]:
        body = {"name": name, "config_ids": config_ids, "set_active": set_active,
                "positive_labels": positive_labels or [{"type": "binary", "value": "true"}]}
        return self.post(f"/projects/{project_id}/experiments", body)

    def deploy(self, project_id: str, *, config_id: str | None = None, experiment_id: str | None = None,
               environments: list[str] | None = None) -> Any:
        body: dict[str, Any] = {"config_id": config_id, "experiment_id": experiment_id}
        if environments:
            body["environments"] = [{"name": name} for name in environments]
        return self.patch(f"/projects/{project_id}/deploy-config", body)

    def project_configs(self, project_id: str) -> list[dict[str, Any]]:
        return self.get(f"/projects/{project_id}/configs")

    def project_experiments(self, project_id: str) -> list[dict[str, Any]]:
        return self.get(f"/projects/{project_id}/experiments")

    def projects(self) -> list[dict[str, Any]]:
        return self.get("/projects", size=1000)["records"]

    def logs(self, project_id: str, page: int = 0, size: int = 100) -> dict[str, Any]:
        return self.get("/logs", project_id=project_id, page=page, size=size)

    # -- feedback and experiments (issue 13) ---------------------------------------------------
    def feedback(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /feedback`` with a list of FeedbackRequests; the FeedbackResponses, in order.

        Retried like any request (connection failures, 429, 503): setting a feedback value twice
        leaves one feedback, so a repeat is harmless.
        """
        return _decode(self.request("POST", "/feedback", items), "POST", "/feedback")

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """``GET /experiments/{id}`` (the local server's): the experiment with its configs' statistics."""
        return self.get(f"/experiments/{experiment_id}")


def _refused(response: requests.Response, method: str, path: str, base_url: str = "") -> HLAPIError:
    """The typed error for an error status (its body read and the response closed). A bare
    "Not Found" from a base URL that does not end in ``/v4`` says where the API lives."""
    retry_after = _retry_after(response)
    body = _json(response)
    response.close()
    error = error_for_status(response.status_code, path, body, retry_after, method)
    if response.status_code == 404 and body == {"detail": "Not Found"} and not base_url.endswith("/v4"):
        error.args = (f"{error}; the v4 API lives under /v4 — did you mean {base_url}/v4?",)
    return error


def _check_event(event: dict[str, Any], path: str) -> None:
    if "detail" in event and "data" not in event:  # decisions table: error mid-stream
        raise HLStreamError(f"POST {path}: the stream failed: {describe_body(event)}; partial output kept")
    problem = response_problem(event, event=True)
    if problem:
        raise HLServerError(f"POST {path} returned 200 with a malformed stream event: {problem}; "
                            "partial output kept", status_code=200, endpoint=path, body=event)


# ``json.dumps(body, default=reveal, allow_nan=False, ensure_ascii=False)`` with one encoder for all
# calls: json.dumps builds a new JSONEncoder for any non-default argument (encode keeps no state)
_ENCODER = json.JSONEncoder(default=reveal, allow_nan=False, ensure_ascii=False)


def _encode(body: Any) -> bytes:
    """``body`` as strict UTF-8 JSON, ``Secret`` values revealed (called only by ``HLClient._send``).

    Raises:
        HLUsageError: naming the first field JSON cannot carry (NaN and inf, numpy and pandas
            values, dates, lone surrogates: pitfalls 14, 16, 17).
    """
    try:
        return _ENCODER.encode(body).encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        pass
    raise HLUsageError(_unencodable(body))  # out here: the failed attempt's exception holds the keys


def _unencodable(body: Any) -> str:
    """``path: why; what to do`` for the first value of ``body`` that JSON cannot carry."""
    todo: list[tuple[str, Any]] = [("", body)]
    seen: set[int] = set()
    while todo:
        path, value = todo.pop()
        problem = _json_problem(value)
        if problem:
            return f"{path or 'the body'}: {problem}"
        if not isinstance(value, (dict, list, tuple)) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            for key in value:
                if key is not None and not isinstance(key, (str, int, float, bool)):
                    return f"{path or 'the body'}: the key {key!r} is not a string"
            items = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
        else:
            items = [(f"{path}[{position}]", item) for position, item in enumerate(value)]
        todo.extend(reversed(items))
    return "the body has a circular reference or is nested too deeply to encode as JSON"


def _json_problem(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{'NaN' if value != value else repr(float(value))} is not valid JSON; use None"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{value[exc.start]!r} is a lone surrogate, not valid UTF-8; remove it"
        return None
    if value is None or isinstance(value, (int, float, dict, list, tuple, Secret)):
        return None
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"
    return f"{name} is not JSON; convert it to str, int, float, bool, None, a list or a dict"


def _forget_request(response: requests.Response) -> None:
    """Drop the clear key and body from the requests a response keeps (``response.request``)."""
    for answered in (*response.history, response):
        if answered.request is not None:
            answered.request.headers.pop("X-API-KEY", None)
            answered.request.body = None


def _idempotency(key: str | None) -> dict[str, str] | None:
    """The ``Idempotency-Key`` header: the same on every retry of one call (servers that do not
    know it ignore it; the local server answers a completed key from its record)."""
    return {"Idempotency-Key": key} if key else None


def _never_sent(exc: Exception) -> bool:
    """True when the request never reached the server (refused, DNS, connect timeout): safe to retry."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _read_timed_out(exc: Exception) -> bool:
    """True for a read timeout, including the ones requests wraps in ConnectionError while reading a body."""
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    return bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)


def _reason(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, reason in (("refused", "connection refused"), ("reset", "connection reset"),
                           ("read timed out", "read timeout"),
                           ("timed out", "connect timeout"), ("name or service", "unknown host"),
                           ("remotedisconnected", "closed without a response"),
                           ("incompleteread", "connection closed mid-response"),
                           ("prematurely", "connection closed mid-response")):
        if needle in text:
            return reason
    return type(exc).__name__
