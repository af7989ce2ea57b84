"""``python -m hl_notebook.server``'s main() with timing wrappers, for server_breakdown.py.

Nothing in the library is edited: this process wraps, in memory, the ASGI app, the chat route's
``_complete`` (calls without streaming, on the event loop since 7281b1f), the mock provider's
awaited latency, ``GroupWriter.write`` (a call's wait for its logs to be committed by the group
writer) and ``Store.write`` (one per batch of calls: waiting for the transaction to open —
in-process lock and ``BEGIN IMMEDIATE`` — and the rest of it), and prints per-phase statistics as JSON
(a line starting ``BREAKDOWN``) when it gets SIGTERM. ``--proto0`` binds the listening
socket with ``proto=0`` as bench/_hl_server_proto0.py does. Other arguments are the
server's own.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import signal
import sys
import threading
import time
from typing import Any

if "--proto0" in sys.argv:
    sys.argv.remove("--proto0")
    import _hl_server_proto0  # importing it patches the server's socket module

    assert _hl_server_proto0.shim

import hl_notebook.server as server_package
import hl_notebook.server.__main__ as server_main
from hl_notebook.server import routes_chat, store, writer
from hl_notebook.server.providers import mock

_lock = threading.Lock()
samples: dict[str, list[float]] = {k: [] for k in ("asgi", "before_handler", "handler", "provider_sleep",
                                                    "write_wait", "lock_wait", "txn_rest", "after_handler")}
_arrived: contextvars.ContextVar[float] = contextvars.ContextVar("arrived", default=0.0)
_handler_end: dict[int, float] = {}


def record(name: str, seconds: float) -> None:
    with _lock:
        samples[name].append(seconds)


def timed_app(app: Any) -> Any:
    async def wrapper(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat"):
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        token = _arrived.set(start)
        box: dict[str, float] = {}
        scope.setdefault("state", {})["bench_box"] = box
        try:
            await app(scope, receive, send)
        finally:
            end = time.perf_counter()
            _arrived.reset(token)
            record("asgi", end - start)
            if "handler_end" in box:
                record("after_handler", end - box["handler_end"])
    wrapper.state = app.state  # type: ignore[attr-defined]  # main() reaches the store through it
    return wrapper


original_create_app = server_package.create_app


def create_app(settings: Any) -> Any:
    return timed_app(original_create_app(settings))


original_complete = routes_chat._complete


async def _complete(request: Any, endpoint: str, body: Any) -> Any:
    start = time.perf_counter()
    arrived = _arrived.get()
    if arrived:
        record("before_handler", start - arrived)
    try:
        return await original_complete(request, endpoint, body)
    finally:
        end = time.perf_counter()
        record("handler", end - start)
        box = request.scope.get("state", {}).get("bench_box")
        if box is not None:
            box["handler_end"] = end


def awaited_as(name: str, method: Any) -> Any:
    """``method`` (an async method), recording how long each await of it takes under ``name``."""
    async def timed(self: Any, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return await method(self, *args)
        finally:
            record(name, time.perf_counter() - start)

    return timed


complete_async = awaited_as("provider_sleep", mock.MockProvider.complete_async)
group_write = awaited_as("write_wait", writer.GroupWriter.write)


original_write = store.Store.write


@contextlib.contextmanager
def write(self: Any) -> Any:
    """Wraps (does not replace) ``Store.write``: ``lock_wait`` is the time until the transaction is
    open (any in-process lock plus ``BEGIN IMMEDIATE``), ``txn_rest`` the body and COMMIT."""
    start = time.perf_counter()
    with original_write(self) as db:
        locked = time.perf_counter()
        yield db
    record("lock_wait", locked - start)
    record("txn_rest", time.perf_counter() - locked)


server_package.create_app = create_app  # main() does ``from . import create_app`` when it runs
routes_chat._complete = _complete
mock.MockProvider.complete_async = complete_async
writer.GroupWriter.write = group_write
store.Store.write = write


def dump(*_: Any) -> None:
    with _lock:
        print("BREAKDOWN " + json.dumps(samples), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, dump)

if __name__ == "__main__":
    sys.exit(server_main.main())
