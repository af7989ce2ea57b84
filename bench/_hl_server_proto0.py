"""``python -m hl_notebook.server`` as shipped, except that its listening socket is forced to
``proto=0`` — the binding the server had before commit 7474105. A what-if variant for the
benchmarks (``--server proto0``), to show what that costs and to catch it coming back.

Why it matters: asyncio turns on TCP_NODELAY for accepted connections only when
``sock.proto == IPPROTO_TCP`` (``asyncio.base_events._set_nodelay``), and uvicorn's h11 protocol
writes the response head and body in two ``transport.write`` calls, so with ``proto=0`` the body of
every response on a kept-alive connection waits for the client's delayed ACK (~40 ms on Linux).
Usage: the same arguments as ``python -m hl_notebook.server``.
"""
from __future__ import annotations

import socket as _socket
import sys
import types

import hl_notebook.server.__main__ as server_main


def _proto0_socket(family: int = _socket.AF_INET, type: int = _socket.SOCK_STREAM, proto: int = 0,  # noqa: A002
                   fileno: int | None = None) -> _socket.socket:
    if fileno is None and type == _socket.SOCK_STREAM and family in (_socket.AF_INET, _socket.AF_INET6):
        proto = 0
    return _socket.socket(family, type, proto, fileno)


shim = types.ModuleType("socket")
shim.__dict__.update(_socket.__dict__)
shim.socket = _proto0_socket  # type: ignore[attr-defined]
server_main.socket = shim  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(server_main.main())
