"""The chat fast path (``fast_path.ChatServerApp``): a valid, authorised, non-streamed chat POST skips
the middleware stack; every answer it gives is the one the full FastAPI stack gives."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hl_notebook.server import ServerSettings, create_app
from hl_notebook.server import routes_chat

KEY = "fast-path-key"
BODY = {"project": "fast", "model_config": {"model": "m", "provider": "mock", "temperature": 0},
        "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"X-API-KEY": KEY}
IDS = re.compile(r'"(data|sx|pr|config|session)_[A-Za-z0-9]{21}"')


@pytest.fixture()
def app(tmp_path: Path) -> FastAPI:
    return create_app(ServerSettings(api_key=KEY, db_path=str(tmp_path / "f.sqlite"), max_body_bytes=4096))


@pytest.fixture()
def full_stack_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests the full FastAPI stack handled (the fast path calls it to hand over)."""
    calls: list[str] = []
    original = FastAPI.__call__

    async def spy(self: FastAPI, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", spy)
    return calls


def _requests() -> list[tuple[str, str, dict[str, Any]]]:
    template = {**BODY["model_config"], "chat_template": [{"role": "system", "content": "about {{topic}}"}]}
    return [
        ("answered", "/v4/chat", BODY),
        ("sampled", "/v4/chat", {**BODY, "num_samples": 3, "model_config": {**BODY["model_config"], "temperature": 1}}),
        ("missing template variable", "/v4/chat", {**BODY, "model_config": template}),
        ("unknown project", "/v4/chat-deployed", {"project": "no-such-project", "messages": BODY["messages"]}),
        ("no project at all", "/v4/chat-deployed", {"messages": BODY["messages"]}),
        ("unknown config", "/v4/chat-model-config", {"model_config_id": "config_" + "x" * 21, "messages": []}),
        ("unknown experiment", "/v4/chat-experiment", {"experiment_id": "exp_" + "x" * 21, "messages": []}),
        ("provider error", "/v4/chat", {**BODY, "model_config": {**BODY["model_config"], "provider": "openai"}}),
    ]


@pytest.mark.parametrize("name, path, body", _requests(), ids=[r[0] for r in _requests()])
def test_the_fast_answer_is_the_full_stacks_answer(app: FastAPI, full_stack_calls: list[str], name: str,
                                                   path: str, body: dict[str, Any]) -> None:
    with TestClient(app) as client:
        fast = client.post(path, json=body, headers=HEADERS)
        assert full_stack_calls == [], f"{name}: handed to the full stack"
        app.fast_routes = {}  # the same app without its fast path
        full = client.post(path, json=body, headers=HEADERS)
        assert full_stack_calls == [path]
    assert (fast.status_code, fast.headers["content-type"]) == (full.status_code, full.headers["content-type"])
    assert IDS.sub('"<id>"', fast.text) == IDS.sub('"<id>"', full.text)


@pytest.mark.parametrize("case, headers, content", [
    ("no key", {}, json.dumps(BODY).encode()),
    ("wrong key", {"X-API-KEY": "wrong"}, json.dumps(BODY).encode()),
    ("another content type", {**HEADERS, "Content-Type": "text/plain"}, json.dumps(BODY).encode()),
    ("empty body", HEADERS, b""),
    ("not JSON", HEADERS, b'{"project": '),
    ("a NaN", HEADERS, b'{"project": "p", "metadata": NaN, "messages": []}'),
    ("invalid", HEADERS, b'{"messages": "no"}'),
    ("streamed", HEADERS, json.dumps({**BODY, "stream": True}).encode()),
    ("over the size limit", HEADERS, json.dumps({**BODY, "metadata": {"pad": "x" * 5000}}).encode()),
])
def test_everything_else_goes_to_the_full_stack_with_its_body(app: FastAPI, full_stack_calls: list[str], case: str,
                                                             headers: dict[str, str], content: bytes) -> None:
    sent = {"Content-Type": "application/json", **headers}
    with TestClient(app) as client:
        response = client.post("/v4/chat", content=content, headers=sent)
        app.fast_routes = {}
        expected = client.post("/v4/chat", content=content, headers=sent)
    assert full_stack_calls == ["/v4/chat", "/v4/chat"], case
    assert response.status_code == expected.status_code != 500
    if case != "streamed":
        assert IDS.sub('"<id>"', response.text) == IDS.sub('"<id>"', expected.text)


def test_each_fast_call_is_counted_once(app: FastAPI, full_stack_calls: list[str]) -> None:
    with TestClient(app) as client:
        client.post("/v4/server-stats/reset", headers=HEADERS)
        for _ in range(3):
            assert client.post("/v4/chat", json=BODY, headers=HEADERS).status_code == 200
        stats = client.get("/v4/server-stats", headers=HEADERS).json()
    assert (stats["requests"], stats["in_flight"]) == (3, 0)
    assert "/v4/chat" not in full_stack_calls


def test_an_unexpected_error_is_the_apps_500_and_still_raised(app: FastAPI, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Any, endpoint: str, body: Any) -> Any:
        raise RuntimeError("boom sk-SECRET")

    monkeypatch.setattr(routes_chat, "_serve", broken)
    with TestClient(app) as client:
        with pytest.raises(RuntimeError):  # the server sees it, as it does through ServerErrorMiddleware
            client.post("/v4/chat", json=BODY, headers=HEADERS)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v4/chat", json=BODY, headers=HEADERS)
    assert (response.status_code, response.json()) == (500, {"detail": "internal server error"})
    assert "sk-SECRET" not in response.text


def _asgi_post(app: FastAPI, messages: list[dict[str, Any]],
               headers: tuple[tuple[bytes, bytes], ...] = ()) -> list[dict[str, Any]]:
    """POST /v4/chat straight to the ASGI app with these receive messages; what it sent."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v4/chat", "raw_path": b"/v4/chat", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"x-api-key", KEY.encode()), *headers],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    sent: list[dict[str, Any]] = []
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(run())
    return sent


def _parts(raw: bytes, size: int = 10) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": raw[i:i + size], "more_body": i + size < len(raw)}
            for i in range(0, len(raw), size)]


def test_a_body_in_several_parts_and_a_client_that_leaves(app: FastAPI, full_stack_calls: list[str]) -> None:
    """The body arrives in chunks (no Content-Length): answered fast. A client that leaves before
    the end of its body goes to the full stack, which sees the same messages."""
    parts = _parts(json.dumps(BODY).encode())
    answered = _asgi_post(app, parts)
    assert answered[0]["status"] == 200 and json.loads(answered[1]["body"])["data"][0]["output"] == "m: hi"
    assert full_stack_calls == []
    left = _asgi_post(app, [parts[0], {"type": "http.disconnect"}])
    assert full_stack_calls == ["/v4/chat"]
    assert not any(m.get("status") == 200 for m in left)


@pytest.mark.parametrize("case", ["chunks over the limit", "a Content-Length over the limit"])
def test_the_size_limit_holds_without_a_length_and_against_a_lying_one(app: FastAPI, full_stack_calls: list[str],
                                                                      case: str) -> None:
    if case == "chunks over the limit":  # no Content-Length: counted as it arrives
        sent = _asgi_post(app, _parts(json.dumps({**BODY, "metadata": {"pad": "x" * 5000}}).encode(), 1000))
    else:  # a small body that says it is large: refused by its header, as BodySizeLimit does
        sent = _asgi_post(app, _parts(json.dumps(BODY).encode()), ((b"content-length", b"99999"),))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {"detail": "request body too large"}
    assert full_stack_calls == ["/v4/chat"]


@pytest.mark.parametrize("closed_by", ["faults", "dependency override", "another middleware"])
def test_the_fast_path_is_off_when_something_else_must_see_the_request(tmp_path: Path, full_stack_calls: list[str],
                                                                       closed_by: str) -> None:
    settings = ServerSettings(api_key=KEY, db_path=str(tmp_path / "c.sqlite"), faults=closed_by == "faults")
    app = create_app(settings)
    if closed_by == "dependency override":
        app.dependency_overrides[len] = len
    if closed_by == "another middleware":
        from starlette.middleware.gzip import GZipMiddleware

        app.add_middleware(GZipMiddleware)
    with TestClient(app) as client:
        assert client.post("/v4/chat", json=BODY, headers=HEADERS).status_code == 200
    assert full_stack_calls == ["/v4/chat"]
