"""``python -m hl_notebook.server`` exactly as shipped, except that its listening socket is created
with ``proto=IPPROTO_TCP`` — a what-if variant for the benchmarks, not a fix.

Why it exists: the shipped server binds ``socket.socket(AF_INET)`` (proto 0). asyncio turns on
TCP_NODELAY for accepted connections only when ``sock.proto == IPPROTO_TCP``
(``asyncio.base_events._set_nodelay``), and uvicorn's h11 protocol writes the response head and
body in two ``transport.write`` calls, so on a kept-alive connection the body waits for the
client's delayed ACK (~40 ms on Linux). Running the same ``main()`` with a TCP-proto socket shows
what the server costs without that stall. Usage: same arguments as ``python -m hl_notebook.server``.
"""
from __future__ import annotations

import socket as _socket
import sys
import types

import hl_notebook.server.__main__ as server_main


def _tcp_socket(family: int = _socket.AF_INET, type: int = _socket.SOCK_STREAM, proto: int = 0,  # noqa: A002
                fileno: int | None = None) -> _socket.socket:
    if fileno is None and type == _socket.SOCK_STREAM and family in (_socket.AF_INET, _socket.AF_INET6):
        proto = proto or _socket.IPPROTO_TCP
    return _socket.socket(family, type, proto, fileno)


shim = types.ModuleType("socket")
shim.__dict__.update(_socket.__dict__)
shim.socket = _tcp_socket  # type: ignore[attr-defined]
server_main.socket = shim  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(server_main.main())
