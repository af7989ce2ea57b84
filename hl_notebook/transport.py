"""A plain-HTTP transport for chat calls: one kept-alive ``http.client`` connection per thread.

Why: a sweep at 32 threads spent 1.5–1.8 ms of client CPU per call in requests, urllib3 and their
per-call bookkeeping, against 0.44–0.49 ms over ``http.client`` alone, and that CPU (under one
GIL) was what kept a 1,000-call sweep at 1.3–1.5× its ideal time (bench/README.md, Issue 15).
``HLClient`` uses this only for non-streaming chat POSTs to an ``http://`` base URL that no proxy
applies to; TLS, proxies and streams stay on requests. Failures are raised as the *requests*
exceptions requests would raise for them, so ``HLClient`` maps them to the same errors: refused or
a connect timeout (never sent: retried), a read timeout, a connection dropped after sending (may
have run: not retried), a body cut mid-way.
"""
from __future__ import annotations

import email.parser
import http.client
import json
import re
import select
import socket
import threading
import types
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.structures import CaseInsensitiveDict


_HEADER_NAME = re.compile(r"[\041-\071\073-\176]+")  # what the email parser takes as a header name
_BLANK = (b"\r\n", b"\n", b"")


def parse_headers(fp: Any, _class: type = http.client.HTTPMessage) -> http.client.HTTPMessage:
    """``http.client.parse_headers`` without the email package for the header blocks servers send
    (one ``Name: value`` a line): the same HTTPMessage at a fifth of the cost (~25 us a response,
    a tenth of a sweep call's client CPU). Any other block (a folded line, a line that is not a
    header) goes to the email parser, as in http.client. Lines are read by http.client's own
    reader, with its limits on line length and count."""
    lines = http.client._read_headers(fp)  # type: ignore[attr-defined]
    message = _class()
    for line in lines:
        if line in _BLANK:
            break
        name, colon, value = line.decode("iso-8859-1").partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name):
            return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))
        message.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))  # email's compat32 header_source_parse
    message.set_payload("")  # what the email parser leaves after the blank line
    return message


class _Response(http.client.HTTPResponse):
    """http.client's response with its header block read by ``parse_headers`` above. ``begin`` is
    the standard library's own function with that one global name bound to ours, so the status
    line, 100 Continue, chunked bodies, lengths and keep-alive are decided by http.client's code."""

    begin = types.FunctionType(http.client.HTTPResponse.begin.__code__,
                               {**vars(http.client), "parse_headers": parse_headers}, "begin")


def response_class() -> type[http.client.HTTPResponse]:
    """``_Response``; the standard library's own where its private header reader is missing (another Python)."""
    return _Response if hasattr(http.client, "_read_headers") else http.client.HTTPResponse


class PlainResponse:
    """The parts of ``requests.Response`` that ``HLClient`` reads; the body is read on first use
    (``content``), after ``HLClient`` has put the socket under its deadline watchdog."""

    def __init__(self, response: http.client.HTTPResponse, url: str, connection: http.client.HTTPConnection,
                 sock: socket.socket | None) -> None:
        self._response, self.url, self._connection = response, url, connection
        self.plain_socket = sock  # taken before getresponse(): a closing response unsets connection.sock
        self.status_code = response.status
        self.reason = response.reason
        self._headers: CaseInsensitiveDict | None = None
        self.history: list[Any] = []
        self.request = None
        self._content: bytes | None = None

    @property
    def headers(self) -> CaseInsensitiveDict:
        """Made when first read (an error's ``Retry-After``): a successful call never reads them."""
        if self._headers is None:
            self._headers = CaseInsensitiveDict(self._response.getheaders())
        return self._headers

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                self._content = self._response.read()
            except (TimeoutError, socket.timeout):
                raise requests.exceptions.ConnectionError(
                    urllib3.exceptions.ReadTimeoutError(None, self.url, "Read timed out.")) from None
            except (http.client.HTTPException, OSError) as exc:
                raise requests.exceptions.ChunkedEncodingError(
                    urllib3.exceptions.ProtocolError("Response ended prematurely", exc)) from None
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError as exc:  # requests raises its JSONDecodeError, a ValueError too
            raise requests.exceptions.JSONDecodeError(str(exc), self.text, 0) from None

    def close(self) -> None:
        self._response.close()
        if self._content is None:  # an unread body would be read as the next response: drop the connection
            self._connection.close()


class PlainTransport:
    """Sends requests to one ``http://host:port`` over a kept-alive connection per thread."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self._local = threading.local()
        self._paths: dict[str, str] = {}  # url -> the path sent (a client has a few URLs)

    def send(self, method: str, url: str, data: bytes | None, headers: dict[str, str],
             timeout: tuple[float, float]) -> PlainResponse:
        """Send and read the status line and headers; the body is read by ``PlainResponse.content``.

        Raises:
            requests.exceptions.RequestException: what requests raises for the same failure.
        """
        connection = self._connection(url, timeout[0])
        path = self._paths.get(url)
        if path is None:
            path = self._paths[url] = urlsplit(url)._replace(scheme="", netloc="").geturl()
        sock = connection.sock
        try:
            sock.settimeout(timeout[1])  # type: ignore[union-attr]
            connection.request(method, path, data, headers)
            response = connection.getresponse()
        except (TimeoutError, socket.timeout):
            connection.close()
            raise requests.exceptions.ReadTimeout(f"read timed out ({url})") from None
        except (http.client.HTTPException, OSError) as exc:
            connection.close()
            raise requests.exceptions.ConnectionError(
                urllib3.exceptions.ProtocolError("Connection aborted.", exc)) from None
        return PlainResponse(response, url, connection, sock)

    def _connection(self, url: str, connect_timeout: float) -> http.client.HTTPConnection:
        """This thread's connection, open; a kept-alive one the server has closed is opened anew
        (as urllib3 does), so only a failure after sending is ambiguous."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(self.host, self.port)
            connection.response_class = response_class()
        if connection.sock is not None and _dropped(connection.sock):
            connection.close()
        if connection.sock is None:
            connection.timeout = connect_timeout
            try:
                connection.connect()
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
            except (TimeoutError, socket.timeout):
                connection.close()
                raise requests.exceptions.ConnectTimeout(f"connect timed out ({url})") from None
            except OSError as exc:
                connection.close()
                reason = urllib3.exceptions.NewConnectionError(None, f"Failed to establish a new connection: {exc}")
                raise requests.exceptions.ConnectionError(
                    urllib3.exceptions.MaxRetryError(None, url, reason=reason)) from None  # type: ignore[arg-type]
        return connection


def _dropped(sock: socket.socket) -> bool:
    """An idle kept-alive socket that is readable has been closed by the server (or sent junk)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
