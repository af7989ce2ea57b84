"""Fake model providers served over real HTTP, and the helper that runs them for tests.

Why: pass-through providers are tested against real sockets speaking each provider's wire format
(conventions §2.6: real servers, no mocks), with failures chosen by the model name.
"""
from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, AsyncIterator, Callable, Iterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

STARTUP_TIMEOUT = 10.0
HANG_LIMIT = 60.0  # a "hang" model waits at most this long for its client to leave


class _Server(uvicorn.Server):
    """A uvicorn server that signals, rather than is polled, when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` on a socket bound here to 127.0.0.1:0 (pitfall 11) and yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY on accept
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not server.ready.wait(STARTUP_TIMEOUT):
            raise RuntimeError("fake provider did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()


@contextmanager
def serve_raw(response: bytes) -> Iterator[str]:
    """Answer one connection with ``response`` verbatim, then close it: for broken HTTP bodies.

    Why: a dropped connection mid-stream cannot be produced through an ASGI app, which always
    finishes its chunked body cleanly.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(STARTUP_TIMEOUT)

    def answer() -> None:
        with listener.accept()[0] as conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            while length and len(body) < int(length.group(1)):
                body += conn.recv(65536)
            conn.sendall(response)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        thread.join(STARTUP_TIMEOUT)
        listener.close()


def provider_app(path: str, *, refuse: Callable[[Request, dict[str, Any]], Response | None],
                 answer: Callable[[dict[str, Any]], dict[str, Any] | Response],
                 events: Callable[[dict[str, Any]], Iterator[str]]) -> FastAPI:
    """A fake provider endpoint ``POST path``, the plumbing both fakes share.

    Every request body is appended to ``app.state.requests`` and its headers to ``app.state.headers``
    first. Then ``refuse`` may answer (a wrong key, a request the real API rejects, a failure picked
    by the model name); otherwise a body with ``stream: true`` gets the SSE text of ``events``, and
    any other ``answer`` (a response, or a dict sent as JSON). Two models never finish, for timeout
    and shutdown tests: ``hang`` sends nothing at all, ``hang-stream`` streams up to the first text
    and then nothing; both stop waiting when the client leaves (or after HANG_LIMIT seconds).
    """
    app = FastAPI()
    app.state.requests = []
    app.state.headers = []

    @app.post(path)
    async def endpoint(request: Request) -> Response:
        body = await request.json()
        app.state.requests.append(body)
        app.state.headers.append(dict(request.headers))
        refused = refuse(request, body)
        if refused is not None:
            return refused
        if body.get("model") == "hang":
            await _until_gone(request)
            return Response(status_code=504)
        if body.get("stream"):
            chunks = events(body)
            if body.get("model") == "hang-stream":
                return StreamingResponse(_stall(chunks, request), media_type="text/event-stream")
            return StreamingResponse(chunks, media_type="text/event-stream")
        answered = answer(body)
        return answered if isinstance(answered, Response) else JSONResponse(answered)

    return app


async def _until_gone(request: Request) -> None:
    """Wait until the client disconnects (at most HANG_LIMIT seconds)."""
    deadline = time.monotonic() + HANG_LIMIT
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)


async def _stall(chunks: Iterator[str], request: Request) -> AsyncIterator[str]:
    """``chunks`` up to and including the first one carrying text (``echo``), then silence."""
    for chunk in chunks:
        yield chunk
        if "echo" in chunk:
            break
    await _until_gone(request)


def text_of(content: Any) -> str:
    """String content, or the text parts/blocks of list content (OpenAI and Anthropic alike)."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def count_words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def reply(messages: list[dict[str, Any]], stop: Any, max_tokens: int | None) -> tuple[str, str]:
    """The fakes' answer ``echo: <last user text>`` and why it ended: "end", "stop" or "length".

    A stop sequence cuts the text before it; ``max_tokens`` keeps that many words.
    """
    last = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    text = f"echo: {last}"
    for sequence in [stop] if isinstance(stop, str) else stop or []:
        if sequence in text:
            return text[: text.index(sequence)], "stop"
    words = text.split()
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "end"


def pieces(text: str) -> list[str]:
    """``text`` split into streamable word pieces that concatenate back to it."""
    return re.findall(r"\S+\s*|\s+", text)
