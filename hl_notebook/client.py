"""HLClient: the v4 HTTP client — headers, timeouts, retry policy, status -> typed error, streaming.

Why: every front end (magic, sweeps, panel, Python API) talks to the server through this one
object, so retries, error messages and key handling behave the same everywhere.
"""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
import urllib3

from .errors import (HLConnectionError, HLServerError, HLStreamError, HLTimeoutError, describe_body,
                     error_for_status, one_line)
from .secrets import Secret, reveal
from .stream import sse_events
from .wire import parse_retry_after

USER_AGENT = "hl_notebook"


@dataclass(frozen=True)
class RetryPolicy:
    """Retry connection failures, 429 and 503 only; honour ``Retry-After``.

    Read timeouts and other 5xx are NOT retried on chat POSTs: the server may already have called
    the provider and stored logs, and a retry would record the call twice.
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

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        while not cancelled():
            remaining = self._until - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.2))


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
    """A v4 client for one base URL and key. Thread-safe: one ``requests.Session`` per thread."""

    def __init__(self, base_url: str, api_key: Secret, *, connect_timeout: float = 10.0,
                 read_timeout: float = 300.0, retry: RetryPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry or RetryPolicy()
        self.throttle = Throttle()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"HLClient(base_url={self.base_url!r}, api_key='***')"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"X-API-KEY": self._api_key.reveal(), "User-Agent": USER_AGENT,
                                    "Accept": "application/json"})
            self._local.session = session
        return session

    # -- the request loop ----------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
                stream: bool = False, cancelled: Callable[[], bool] = lambda: False,
                headers: dict[str, str] | None = None) -> requests.Response:
        """Send with retries; return a 2xx response or raise a typed HLError (message redacted)."""
        url = self.base_url + path
        attempt = 0
        while True:
            self.throttle.wait(cancelled)
            try:
                response = self._send(method, url, body, params=params, stream=stream, headers=headers)
            except requests.exceptions.ReadTimeout:
                raise HLTimeoutError(f"{method} {path}: no answer from {self.base_url} within "
                                     f"{self.timeout[1]:g} s (HLSettings.read_timeout)") from None
            except requests.exceptions.ChunkedEncodingError:
                raise HLConnectionError(f"{method} {path}: the connection closed mid-response; the call "
                                        "may have run on the server, so it is not retried") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.ConnectTimeout) as exc:
                if _read_timed_out(exc):  # headers came, then the body stalled
                    raise HLTimeoutError(f"{method} {path}: no answer from {self.base_url} within "
                                         f"{self.timeout[1]:g} s (HLSettings.read_timeout)") from None
                if not _never_sent(exc):
                    raise HLConnectionError(f"{method} {path}: the connection dropped ({_reason(exc)}); the "
                                            "call may have run on the server, so it is not retried") from None
                if attempt < self.retry.max_retries and not cancelled():
                    time.sleep(self.retry.delay(attempt, None))
                    attempt += 1
                    continue
                raise HLConnectionError(f"cannot reach {self.base_url} ({_reason(exc)}); is the server "
                                        "running? set HLSettings.base_url or HUMANLOOP_BASE_URL") from None
            if response.status_code < 400:
                return response
            retry_after = _retry_after(response)
            body_json = _json(response)
            response.close()
            if response.status_code in self.retry.retry_statuses and attempt < self.retry.max_retries \
                    and not cancelled():
                self.throttle.hold(self.retry.delay(attempt, retry_after))  # every worker waits
                attempt += 1
                continue
            raise error_for_status(response.status_code, path, body_json, retry_after, method) from None

    def _send(self, method: str, url: str, body: Any, **kwargs: Any) -> requests.Response:
        """The only place a body's ``Secret`` values are revealed: while encoding it, in this frame."""
        data = None if body is None else json.dumps(body, default=reveal, allow_nan=False).encode()
        headers = {**(kwargs.pop("headers") or {}), **({"Content-Type": "application/json"} if data else {})}
        return self._session().request(method, url, data=data, headers=headers, timeout=self.timeout, **kwargs)

    def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return _decode(self.request("POST", path, body, **kwargs), "POST", path)

    def get(self, path: str, **params: Any) -> Any:
        return _decode(self.request("GET", path, params=params or None), "GET", path)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return _decode(self.request("PATCH", path, body), "PATCH", path)

    # -- chat ----------------------------------------------------------------------------------
    def chat(self, path: str, body: dict[str, Any], cancelled: Callable[[], bool] = lambda: False, *,
             idempotency_key: str | None = None) -> dict[str, Any]:
        response = self.request("POST", path, body, cancelled=cancelled, headers=_idempotency(idempotency_key))
        result = _decode(response, "POST", path)
        if not isinstance(result, dict):
            raise HLServerError(f"POST {path} returned {response.status_code} with JSON that is not a ChatResponse "
                                f"(a {type(result).__name__}); the call may have run on the server",
                                status_code=response.status_code, endpoint=path, body=result)
        return result

    def chat_stream(self, path: str, body: dict[str, Any], cancelled: Callable[[], bool] = lambda: False, *,
                    idempotency_key: str | None = None) -> Iterator[dict[str, Any]]:
        """Stream events as dicts. A mid-stream error event or a broken connection raises HLStreamError
        (partial text is kept by the caller's assembler)."""
        response = self.request("POST", path, {**body, "stream": True}, stream=True, cancelled=cancelled,
                                headers=_idempotency(idempotency_key))
        with response:
            try:
                for event in sse_events(response.iter_content(chunk_size=None)):
                    if "detail" in event and "data" not in event:  # decisions table: error mid-stream
                        raise HLStreamError(f"POST {path}: the stream failed: {describe_body(event)}; "
                                            "partial output kept")
                    yield event
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                    requests.exceptions.ReadTimeout) as exc:
                if not _read_timed_out(exc):
                    raise HLStreamError(f"POST {path}: the stream broke ({_reason(exc)}); partial output kept"
                                        ) from None
                raise HLTimeoutError(f"POST {path}: the stream stalled for {self.timeout[1]:g} s "
                                     "(HLSettings.read_timeout); partial output kept") from None

    # -- management (spec §9) ------------------------------------------------------------------
    def register_config(self, project: str, **config: Any) -> dict[str, Any]:
        return self.post("/model-configs", {"project": project, **config})

    def create_experiment(self, project_id: str, name: str, config_ids: list[str], set_active: bool = False
                          ) -> dict[str, Any]:
        body = {"name": name, "config_ids": config_ids, "set_active": set_active,
                "positive_labels": [{"type": "binary", "value": "true"}]}
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
