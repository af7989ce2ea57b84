"""The plain-HTTP transport under HLClient.chat: where it applies, and kept-alive connections the server closed."""
from __future__ import annotations

import json
import socket
import threading

import pytest

from hl_notebook.client import HLClient
from hl_notebook.secrets import Secret
from hl_notebook.transport import PlainTransport

RESPONSE = {"project_id": "pr_t", "data": [{"id": "data_t0", "index": 0, "output": "hi", "raw_output": "hi",
                                            "finish_reason": "stop", "model_config_id": "config_t"}],
            "provider_responses": []}
BODY = {"model_config": {"model": "m", "provider": "mock"}, "messages": [{"role": "user", "content": "hello"}]}


def test_plain_http_without_a_proxy_uses_the_plain_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(HLClient("http://127.0.0.1:9/v4", Secret("k"))._plain(), PlainTransport)
    assert HLClient("https://example.invalid/v4", Secret("k"))._plain() is None


def test_a_proxied_base_url_stays_on_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    assert HLClient("http://10.1.2.3:8000/v4", Secret("k"))._plain() is None


def test_a_kept_alive_connection_the_server_closed_is_opened_again() -> None:
    """The server answers keep-alive (no Connection: close) and then closes the socket anyway, as
    an idle timeout does: the next call must not fail as 'connection dropped'."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[int] = []
    closed = threading.Event()  # the server closed its end of the first connection
    body = json.dumps(RESPONSE).encode()

    def serve() -> None:
        for _ in range(2):
            sock, _ = listener.accept()
            accepted.append(1)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(rest) < length:
                rest += sock.recv(65536)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            sock.close()
            closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = HLClient(f"http://127.0.0.1:{listener.getsockname()[1]}/v4", Secret("k"))
    try:
        assert client.chat("/chat", BODY)["data"][0]["output"] == "hi"
        assert closed.wait(5)
        assert client.chat("/chat", BODY)["data"][0]["output"] == "hi"
    finally:
        thread.join(5)
        listener.close()
    assert len(accepted) == 2


HEADER_BLOCKS = [
    b"date: Sun, 29 Nov 2026 20:30:38 GMT\r\nserver: uvicorn\r\ncontent-length: 12\r\n"
    b"content-type: application/json\r\n\r\n",  # what the local server sends
    b"Content-Type: text/plain\nX-Empty:\nX-Spaces:  \t padded value  \nRetry-After: 3\n\n",  # bare LF, empty value
    b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nX-Latin: caf\xe9\r\n\r\n",  # repeated names, a Latin-1 byte
    b"X-Cut: no blank line at the end",  # the connection closed inside the headers
    b"\r\n",  # no headers at all
    # the email parser's cases: a folded line, a line that is not a header, a name with a space, ':' first
    b"X-Folded: one\r\n two\r\nContent-Length: 3\r\n\r\n",
    b"Content-Length: 3\r\nnot a header line\r\nX-After: 1\r\n\r\n",
    b"Bad Name: x\r\nContent-Length: 3\r\n\r\n",
    b": nameless\r\nContent-Length: 3\r\n\r\n",
]


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_the_header_parser_gives_what_http_client_gives(block: bytes) -> None:
    import http.client
    import io

    from hl_notebook.transport import parse_headers

    ours, theirs = parse_headers(io.BytesIO(block)), http.client.parse_headers(io.BytesIO(block))
    assert type(ours) is type(theirs)
    assert {k: v for k, v in vars(ours).items() if k != "defects"} == \
        {k: v for k, v in vars(theirs).items() if k != "defects"}
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert ours.items() == theirs.items() and ours.get("content-length") == theirs.get("content-length")


def test_the_plain_response_is_http_clients_own_but_for_the_header_parser() -> None:
    """``_Response.begin`` is http.client's code: if a Python version stops calling parse_headers
    from it, this says the fast parser is no longer used (the responses stay http.client's)."""
    import http.client

    from hl_notebook.transport import _Response, parse_headers

    assert _Response.begin.__code__ is http.client.HTTPResponse.begin.__code__
    assert "parse_headers" in _Response.begin.__code__.co_names
    assert _Response.begin.__globals__["parse_headers"] is parse_headers


def test_without_the_private_header_reader_the_standard_response_is_used(monkeypatch) -> None:
    """``transport._Response`` leans on ``http.client._read_headers``; a Python without it gets
    http.client's own response class instead of failing every call."""
    import http.client

    from hl_notebook import transport

    assert transport.response_class() is transport._Response
    monkeypatch.delattr(http.client, "_read_headers")
    assert transport.response_class() is http.client.HTTPResponse
