"""SSE framing for streamed chat responses (spec §7; decisions table), and the response that sends them.

Why: the SDKs read the body line by line and keep only ``data: `` lines, so each event must be one
line of JSON followed by a blank line; the stream ends by closing, with no ``[DONE]``. Starlette
does not close a *sync* generator when the client leaves (pitfall 18): the garbage collector did,
later, on whatever thread it ran on. ``EventStream`` steps the generator on worker threads itself,
watches for the client leaving, and always closes the generator explicitly, on a worker thread.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import anyio
import anyio.to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: dict[str, Any]) -> bytes:
    """One event as ``data: <one-line JSON>\\n\\n``; never a bare ``NaN`` (``allow_nan=False`` raises)."""
    return b"data: " + json.dumps(event, separators=(",", ":"), allow_nan=False).encode() + b"\n\n"


class EventStream(Response):
    """A ``text/event-stream`` response over a sync iterator of events.

    Args:
        events: the events; each step runs on a worker thread of ``limiter``. It must do no I/O
            when closed early.
        limiter: the capacity limiter of those threads (None: anyio's default one).
        on_error: called on a worker thread with an exception raised while stepping or framing;
            returns the error event sent in its place, after which the stream ends.
        on_close: called exactly once on a worker thread after the iterator is closed, with
            ``True`` when every event was sent and ``False`` when the client left (or sending
            failed) first. Closing and this call happen even when the request task is cancelled.
    """

    media_type = "text/event-stream"

    def __init__(self, events: Iterator[dict[str, Any]], *, limiter: anyio.CapacityLimiter | None,
                 on_error: Callable[[Exception], dict[str, Any]], on_close: Callable[[bool], None],
                 headers: dict[str, str] | None = None) -> None:
        self.events, self.limiter = events, limiter
        self.on_error, self.on_close = on_error, on_close
        self.status_code = 200
        self.background = None
        self.init_headers({**HEADERS, **(headers or {})})
        self._ended = False

    def _next_chunk(self) -> bytes | None:
        """The next framed event, None at the end (worker thread)."""
        if self._ended:
            return None
        try:
            return frame(next(self.events))
        except StopIteration:
            self._ended = True
            return None
        except Exception as exc:  # framing failed, or the iterator raised instead of yielding its error
            self._ended = True
            if hasattr(self.events, "close"):
                self.events.close()
            return frame(self.on_error(exc))

    def _close(self, completed: bool) -> None:
        """Close the iterator (no I/O of its own), then report how the stream ended (worker thread)."""
        try:
            if hasattr(self.events, "close"):
                self.events.close()
        finally:
            self.on_close(completed)

    async def _send_all(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        while (chunk := await anyio.to_thread.run_sync(self._next_chunk, limiter=self.limiter)) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        try:
            async with anyio.create_task_group() as group:
                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()  # the client left: stop stepping the iterator

                group.start_soon(watch_disconnect)
                try:
                    await self._send_all(send)
                    completed = True
                except OSError:  # the client left while we were sending (ASGI spec 2.4 servers)
                    pass
                finally:
                    group.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self._close, completed, limiter=self.limiter)
        except BaseExceptionGroup as failures:  # one failure inside the group: raise it as it came
            if len(failures.exceptions) == 1:
                raise failures.exceptions[0] from None
            raise
