"""A tiny raw-socket HTTP server that plays one scripted behaviour per accepted connection.

Why: the real server cannot refuse, stall, truncate a body or cut a stream at a chosen byte, so the
client's failure handling is tested against exactly those bytes (the idea of requests'
``tests/testserver``). Every script answers with ``Connection: close``, so one connection is one
request and ``len(server.requests)`` counts the attempts the client made.
"""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

Script = Callable[["Connection"], None]

REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable"}


@dataclass
class Request:
    """One request as received: method, path (with query), headers (lower-case names) and body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """An accepted socket plus the helpers a script uses to answer with raw bytes."""

    def __init__(self, sock: socket.socket, server: "RawServer") -> None:
        self.sock = sock
        self.server = server
        self.request: Request | None = None

    def read_request(self) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return Request(method, path, headers, body)

    def send(self, data: bytes) -> None:
        """One write; TCP_NODELAY is on, so separate calls leave as separate segments."""
        self.sock.sendall(data)

    def head(self, status: int, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "Connection: close",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (the client's decoder hands each chunk on separately)."""
        self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def hold(self) -> None:
        """Keep the connection open without answering until the server shuts down."""
        self.server.stopping.wait()

    def every(self, seconds: float) -> Iterator[None]:
        """Tick every ``seconds`` until the server shuts down (the pace of a trickling server; the
        client going away ends the script with a socket error)."""
        while not self.server.stopping.wait(seconds):
            yield


class RawServer:
    """Bound to 127.0.0.1:0; connection *i* runs ``scripts[i]`` (the last script repeats).

    Use as a context manager. ``base_url`` ends in ``/v4`` like the real server's. A script that
    raises anything but a socket error makes ``__exit__`` fail, so a broken script cannot pass.
    """

    def __init__(self, *scripts: Script) -> None:
        if not scripts:
            raise ValueError("give at least one script")
        self.scripts = scripts
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v4"
        self._connections = 0

    def __enter__(self) -> "RawServer":
        accept = threading.Thread(target=self._accept_loop, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stopping.set()
        try:  # wake the blocking accept()
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        except OSError:
            pass
        self._threads[0].join(5)  # the accept loop: no connection threads are added after it ends
        for thread in self._threads[1:]:
            thread.join(5)
        self._listener.close()
        if self.errors and exc_info[0] is None:
            raise AssertionError(f"raw server script failed: {self.errors[0]!r}") from self.errors[0]

    def _accept_loop(self) -> None:
        while True:
            sock, _ = self._listener.accept()
            if self.stopping.is_set():
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            script = self.scripts[min(self._connections, len(self.scripts) - 1)]
            self._connections += 1
            thread = threading.Thread(target=self._serve, args=(sock, script), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket, script: Script) -> None:
        connection = Connection(sock, self)
        try:
            connection.request = connection.read_request()
            if connection.request is None:
                return
            with self._lock:
                self.requests.append(connection.request)
            script(connection)
        except OSError:
            pass  # the client went away; that is its business
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__
            self.errors.append(exc)
        finally:
            sock.close()


# -- scripts --------------------------------------------------------------------------------------
def reply(status: int, body: Any = b"", headers: dict[str, str] | None = None,
          content_type: str = "application/json") -> Script:
    """A complete response with a correct Content-Length; dicts and lists are sent as JSON."""
    data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())

    def script(connection: Connection) -> None:
        connection.head(status, {"Content-Type": content_type, "Content-Length": str(len(data)), **(headers or {})})
        connection.send(data)
    return script


def short_body(status: int, declared: int, data: bytes) -> Script:
    """Headers promise ``declared`` bytes; fewer are sent before the socket closes."""
    def script(connection: Connection) -> None:
        connection.head(status, {"Content-Type": "application/json", "Content-Length": str(declared)})
        connection.send(data)
    return script


def hang(connection: Connection) -> None:
    """Read the request and never answer."""
    connection.hold()


def drop(connection: Connection) -> None:
    """Read the request and close the socket without a byte of response."""


def stream(*pieces: bytes, end: bool = True, then_hang: bool = False, then_trickle: bytes = b"",
           every: float = 0.05) -> Script:
    """A chunked ``text/event-stream`` response, each piece one chunk written separately.

    ``end=False`` closes the socket without the terminating zero chunk (a stream cut mid-way);
    ``then_hang=True`` keeps the connection silent after the pieces (a stalled stream);
    ``then_trickle`` is sent again every ``every`` seconds, forever (SSE comments that keep a
    stream alive without ever finishing it).
    """
    def script(connection: Connection) -> None:
        connection.head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
        for piece in pieces:
            connection.chunk(piece)
        if then_trickle:
            for _ in connection.every(every):
                connection.chunk(then_trickle)
        elif then_hang:
            connection.hold()
        elif end:
            connection.send(b"0\r\n\r\n")
    return script


def trickle_body(status: int, body: bytes, every: float = 0.05) -> Script:
    """A complete ``Content-Length`` response whose body is sent one byte every ``every`` seconds."""
    def script(connection: Connection) -> None:
        connection.head(status, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        for position, _ in zip(range(len(body)), connection.every(every)):
            connection.send(body[position:position + 1])
    return script


def event(output: str, index: int = 0, finish_reason: str | None = None, *, eol: bytes = b"\n") -> bytes:
    """One SSE event in the shape our server streams (spec §7: a ChatResponse skeleton per event)."""
    payload = {"project_id": "pr_raw", "data": [{"id": f"data_raw{index}", "index": index, "output": output,
                                                   "finish_reason": finish_reason}],
               "provider_responses": []}
    return b"data: " + json.dumps(payload).encode() + eol + eol
