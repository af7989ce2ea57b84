"""The embedded default: the local v4 server started in-process on a loopback socket.

Why: with no server configured, ``%%hlchat`` must still work with zero set-up, offline, using the
``mock`` provider; the server runs on a daemon thread with a fresh random key.
"""
from __future__ import annotations

import atexit
import secrets
import socket
import threading
from dataclasses import dataclass, replace
from typing import Any

from .config import HOME
from .errors import HLConfigError
from .secrets import Secret, remember

_lock = threading.Lock()
_running: "EmbeddedServer | None" = None


@dataclass
class EmbeddedServer:
    base_url: str
    api_key: Secret
    _server: object
    _thread: threading.Thread

    @property
    def mock_latency_ms(self) -> float:
        return self._app().state.settings.mock_latency_ms

    @mock_latency_ms.setter
    def mock_latency_ms(self, value: float) -> None:
        """Applies to the next call: the chat route reads the settings per request."""
        state = self._app().state
        state.settings = replace(state.settings, mock_latency_ms=value)

    def _app(self) -> Any:
        return self._server.config.app  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Ask uvicorn to finish (in-flight requests end, the SQLite file is closed cleanly);
        registered with ``atexit`` for the shared server."""
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(10)


def start(db_path: str | None = None, mock_latency_ms: float = 0.0) -> EmbeddedServer:
    """Start a server on 127.0.0.1 (port picked by binding to 0: no race) and wait until it serves."""
    try:
        import uvicorn

        from .server import API_PREFIX, ServerSettings, create_app
    except ImportError as exc:  # pragma: no cover - only without the server dependencies
        raise HLConfigError(f"the local server needs FastAPI and uvicorn ({exc.name} is missing); "
                            "pip install hl_notebook") from None
    key = secrets.token_urlsafe(24)
    remember(key)
    settings = ServerSettings(api_key=key, db_path=db_path or str(HOME / "embedded.sqlite"),
                              mock_latency_ms=mock_latency_ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY (see server CLI)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hl_notebook-server",
                              daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise HLConfigError("the embedded local server failed to start")
        thread.join(0.01)
    return EmbeddedServer(f"http://127.0.0.1:{port}{API_PREFIX}", Secret(key), server, thread)


def shared(mock_latency_ms: float = 0.0) -> tuple[EmbeddedServer, bool]:
    """The process-wide embedded server, started on first use; the flag says it was just started."""
    global _running
    with _lock:
        if _running is not None and _running._thread.is_alive():
            if _running.mock_latency_ms != mock_latency_ms:  # %config HLSettings.mock_latency_ms changed
                _running.mock_latency_ms = mock_latency_ms
            return _running, False
        _running = start(mock_latency_ms=mock_latency_ms)
        atexit.register(_running.stop)
        return _running, True
