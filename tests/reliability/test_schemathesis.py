"""Schemathesis against the server's own OpenAPI document, valid and invalid requests (``other``
included), plus explicit bad inputs of the kinds that once got a 500: no 5xx of our own, ever, and
every error is a v4 body (422: items of loc/msg/type only; others ``{"detail": ...}``) sent as JSON.

Why: a 500 after validation means a request the schema let through broke the server, often after
its log was stored (NaN in a response, a lone surrogate in SQLite, a bad ``other`` value in a
provider); the client cannot tell such a call from a transient failure and may log it twice.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from starlette.testclient import TestClient

from hl_notebook.server import ServerSettings, create_app
from support import closed_port_url

KEY = "schemathesis-key-1234"
MAX_LATENCY_MS = 1  # generated mock latencies above this are cut down (per sample and per word: cases stay fast)

# pass-through providers must never leave this machine: point them at a closed loopback port
CLOSED = closed_port_url()
os.environ["OPENAI_BASE_URL"] = CLOSED + "/v1"
os.environ["ANTHROPIC_BASE_URL"] = CLOSED
APP = create_app(ServerSettings(api_key=KEY, db_path=str(Path(tempfile.mkdtemp()) / "st.sqlite")))
# every phase (schema examples, coverage of the schema's edges, fuzzing) in positive and negative mode;
# a fixed seed keeps the run reproducible (about 40 s of CPU on this machine)
CONFIG = SchemathesisConfig.from_dict({
    "seed": 20241,
    "generation": {"mode": "all", "max-examples": 100},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
})
schema = schemathesis.openapi.from_asgi("/v4/openapi.json", APP, config=CONFIG)
PROVIDER_ORIGINS = {"OpenAI", "Anthropic"}


def keep_local(body: Any) -> None:
    """Keep ``other`` (it is part of the surface) but aim any ``base_url`` at the closed port and cap
    mock latencies, so a generated case neither leaves the machine nor sleeps for long.
    (Wild temperatures are left as generated: this test found that 1e16 kept the mock busy for ever;
    fixed in 11e099f.)
    """
    if not isinstance(body, dict):
        return
    for holder in (body, body.get("model_config")):  # POST /model-configs has ``other`` at the top
        if not isinstance(holder, dict):
            continue
        other = holder.get("other")
        if not isinstance(other, dict):
            continue
        if isinstance(other.get("base_url"), str):
            other["base_url"] = CLOSED
        for name in ("mock_latency_ms", "mock_token_delay_ms"):
            value = other.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_LATENCY_MS:
                other[name] = MAX_LATENCY_MS


def header(response: Any, name: str) -> str:
    value = response.headers.get(name, "")
    return value[0] if isinstance(value, list) else value


def assert_v4_response(response: Any, method: str, path: str) -> None:
    """No 5xx of ours; an error is ``{"detail": ...}`` in one of the v4 shapes, as JSON."""
    status, text = response.status_code, response.text
    where = f"{method} {path} -> {status}: {text[:300]}"
    content_type = header(response, "content-type")
    if status < 400:
        assert content_type.startswith(("application/json", "text/event-stream")), where
        if content_type.startswith("text/event-stream"):
            assert_sse_events(text, where)
        return
    assert content_type.startswith("application/json"), where
    body = json.loads(text)
    assert isinstance(body, dict) and set(body) == {"detail"}, where
    assert_detail(body["detail"], status, where)


def assert_detail(detail: Any, status: int, where: str) -> None:
    if isinstance(detail, list):  # validation (spec §8): loc/msg/type only, never the input
        assert status == 422 and detail, where
        for item in detail:
            assert isinstance(item, dict) and set(item) == {"loc", "msg", "type"}, where
            assert isinstance(item["loc"], list) and all(isinstance(p, (str, int)) for p in item["loc"]), where
            assert isinstance(item["msg"], str) and isinstance(item["type"], str), where
    elif isinstance(detail, dict):  # the provider-error object (spec §8)
        assert set(detail) == {"type", "message", "code", "origin"}, where
        assert detail["code"] == status, where
        # 502/503 are how unreachable or failing providers are reported; any other 5xx is our bug
        assert status < 500 or (status in (502, 503) and detail["origin"] in PROVIDER_ORIGINS), where
    else:
        assert isinstance(detail, str) and detail and status < 500, where


def assert_sse_events(text: str, where: str) -> None:
    """Every event of a stream is one JSON object; an error inside it is the §8 object."""
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events, where
    for event in events:
        payload = json.loads(event)
        if "detail" in payload:
            assert set(payload) == {"detail"}, where
            detail = payload["detail"]
            assert isinstance(detail, dict) and set(detail) == {"type", "message", "code", "origin"}, where
            assert detail["code"] < 500 or detail["origin"] in PROVIDER_ORIGINS, where


# The schema leaves ``other`` and text parts free-form and most generated bodies fail validation
# early, so generation alone almost never reaches the values the server reads late. With these
# hints, half of the chat-shaped bodies get a valid user message (text, lone surrogates included,
# or parts holding any JSON value), a provider that reads ``other`` (with a fake key) and any JSON
# value at ``other``'s control keys; half of the log listings get a large page number.
TEXT = st.text(st.characters() | st.sampled_from("\ud800\udfff"), max_size=12)  # lone surrogates too
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=4)
CONTROL = st.dictionaries(st.sampled_from(["mock_latency_ms", "mock_token_delay_ms", "timeout", "base_url"]),
                          JSON_VALUES, max_size=2)
CONTENT = TEXT | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": JSON_VALUES}), min_size=1, max_size=2)
HINT = st.sampled_from([True, False])  # hinted first: shrinking keeps a hinted failure hinted
FAKE_KEYS = {"openai": "sk-fake-0000", "anthropic": "sk-ant-fake-0000"}


def add_hints(case: Any, data: st.DataObject) -> None:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model_config"), dict) and data.draw(HINT, "hint"):
        config = body["model_config"]
        body["messages"] = [{"role": "user", "content": data.draw(CONTENT, "content")}]
        config["model"] = config["model"] if isinstance(config.get("model"), str) else "m"
        config["provider"] = data.draw(st.sampled_from(["mock", "mock", "openai", "anthropic"]), "provider")
        other = config["other"] = config["other"] if isinstance(config.get("other"), dict) else {}
        other.update(data.draw(CONTROL, "other"))
        body["provider_api_keys"] = FAKE_KEYS
    if case.path.endswith("/logs") and isinstance(case.query, dict) and data.draw(HINT, "hint"):
        case.query["page"] = data.draw(st.integers(min_value=0, max_value=10**30), "page")


@schema.given(data=st.data())
@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_no_server_error_and_v4_error_bodies(case, data):
    add_hints(case, data)
    keep_local(case.body)
    # the schema declares X-API-KEY, so generated cases carry their own (wrong) keys; auth has its own tests
    case.headers = {**(case.headers or {}), "X-API-KEY": KEY}
    response = case.call()
    assert_v4_response(response, case.method, case.path)


# -- explicit bad inputs (each once answered 500) -------------------------------------------------
def chat_body(**config: Any) -> dict[str, Any]:
    return {"project": "bad-input", "messages": [{"role": "user", "content": "hi {{x}}"}], "inputs": {"x": "1"},
            "model_config": {"model": "m", "provider": "mock", "temperature": 0, **config}}


def raw(body: dict[str, Any], **replace: str) -> bytes:
    """``body`` as JSON text with placeholders swapped for raw JSON (NaN, Infinity, escapes)."""
    text = json.dumps(body)
    for placeholder, value in replace.items():
        text = text.replace(json.dumps(placeholder), value)
    return text.encode()


def with_message(content: Any, **extra: Any) -> dict[str, Any]:
    return {**chat_body(), "messages": [{"role": "user", "content": content}], **extra}


def with_other(stream: bool = False, provider: str = "mock", **other: Any) -> dict[str, Any]:
    """A body whose ``other`` holds the given values; pass-through providers get a (fake) key, so the
    call gets as far as using ``other`` (their base URLs point at a closed port)."""
    keys = {"openai": "sk-fake-0000", "anthropic": "sk-ant-fake-0000"}
    return {**chat_body(provider=provider, other=other), "stream": stream, "provider_api_keys": keys}


NON_FINITE = {f"{value} in {where}": (where, value) for value in ("NaN", "Infinity", "-Infinity", "1e400")
              for where in ("temperature", "top_p", "inputs", "metadata")}


def non_finite_body(where: str, value: str) -> bytes:
    body = chat_body()
    if where in ("temperature", "top_p"):
        body["model_config"][where] = "@@"
    elif where == "inputs":
        body["inputs"] = {"x": "@@"}
    else:
        body["metadata"] = {"score": "@@"}
    return raw(body, **{"@@": value})


SURROGATE = r'"\ud800"'
SURROGATES = {
    "message content": raw(with_message("@@"), **{"@@": SURROGATE}),
    "project name": raw({**chat_body(), "project": "@@"}, **{"@@": SURROGATE}),
    "model name": raw(chat_body(model="@@"), **{"@@": SURROGATE}),
    "input value": raw({**chat_body(), "inputs": {"x": "@@"}}, **{"@@": SURROGATE}),
    "metadata value": raw({**chat_body(), "metadata": {"k": "@@"}}, **{"@@": SURROGATE}),
    "text part": raw(with_message([{"type": "text", "text": "@@"}]), **{"@@": SURROGATE}),
    "stream content": raw({**with_message("@@"), "stream": True}, **{"@@": SURROGATE}),
}

BAD_BODIES = {
    # non-string text parts
    "text part is a number": with_message([{"type": "text", "text": 5}]),
    "text part is a list": with_message([{"type": "text", "text": ["a"]}]),
    "text part without text": with_message([{"type": "text"}]),
    "part without type": with_message([{"text": "hi"}]),
    "image part only": with_message([{"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}]),
    "text part is null, streamed": {**with_message([{"type": "text", "text": None}]), "stream": True},
    # bad other.mock_latency_ms / mock_token_delay_ms
    "mock_latency_ms is a word": with_other(mock_latency_ms="slow"),
    "mock_latency_ms is negative": with_other(mock_latency_ms=-5),
    "mock_latency_ms is huge": with_other(mock_latency_ms=1e300),
    "mock_latency_ms is a list": with_other(mock_latency_ms=[1]),
    "mock_latency_ms is true": with_other(mock_latency_ms=True),
    "mock_token_delay_ms is a word, streamed": with_other(stream=True, mock_token_delay_ms="x"),
    "mock_token_delay_ms is negative, streamed": with_other(stream=True, mock_token_delay_ms=-1),
    "mock_token_delay_ms is huge, streamed": with_other(stream=True, mock_token_delay_ms=1e300),
    # bad other.timeout on the pass-through providers (aimed at a closed port)
    **{f"timeout {value!r} ({provider})": with_other(provider=provider, timeout=value)
       for provider in ("openai", "anthropic") for value in ("soon", -1, 1e300, [5], {"read": 1})},
    "base_url is a number (openai)": with_other(provider="openai", base_url=5),
    "base_url is a list (anthropic)": with_other(provider="anthropic", base_url=["x"]),
}

BAD_QUERIES = {"&".join(f"{k}={v}" for k, v in query.items()): query
               for query in ({"page": 10**17}, {"page": 10**17, "size": 1000}, {"page": 2**63}, {"page": 10**30},
                             {"size": 10**17}, {"page": -1}, {"size": 0})}


@pytest.fixture(scope="module")
def client():
    with TestClient(APP, raise_server_exceptions=False) as test_client:
        test_client.headers["X-API-KEY"] = KEY
        yield test_client


def post_raw(client: TestClient, data: bytes) -> Any:
    return client.post("/v4/chat", content=data, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("where,value", NON_FINITE.values(), ids=list(NON_FINITE))
def test_non_finite_numbers_are_422(client, where, value):
    response = post_raw(client, non_finite_body(where, value))
    assert_v4_response(response, "POST", "/v4/chat")
    assert response.status_code == 422, response.text[:300]


@pytest.mark.parametrize("data", SURROGATES.values(), ids=list(SURROGATES))
def test_lone_surrogates_are_422(client, data):
    response = post_raw(client, data)
    assert_v4_response(response, "POST", "/v4/chat")
    assert response.status_code == 422, response.text[:300]


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=list(BAD_BODIES))
def test_bad_chat_bodies_get_no_server_error(client, body):
    response = client.post("/v4/chat", json=body)
    assert_v4_response(response, "POST", "/v4/chat")


@pytest.fixture(scope="module")
def logged_project(client) -> str:
    response = client.post("/v4/chat", json={**chat_body(), "project": "pages"})
    assert response.status_code == 200, response.text[:300]
    return response.json()["project_id"]


@pytest.mark.parametrize("params", BAD_QUERIES.values(), ids=list(BAD_QUERIES))
def test_bad_log_pages_get_no_server_error(client, logged_project, params):
    response = client.get("/v4/logs", params={"project_id": logged_project, **params})
    assert_v4_response(response, "GET", "/v4/logs")
    assert response.status_code in (200, 422), response.text[:300]


def test_the_checks_themselves_reject_what_they_should():
    """The assertions above fail on a 500, on FastAPI's default 422 (which echoes ``input``) and on
    a non-JSON error, so a passing run means something."""

    class Fake:
        def __init__(self, status: int, body: Any, content_type: str = "application/json") -> None:
            self.status_code, self.headers = status, {"content-type": content_type}
            self.text = body if isinstance(body, str) else json.dumps(body)

    bad = [Fake(500, {"detail": "Internal Server Error"}), Fake(500, "Internal Server Error", "text/plain"),
           Fake(422, {"detail": [{"loc": ["body"], "msg": "x", "type": "y", "input": {"k": "v"}}]}),
           Fake(404, "not found", "text/plain"), Fake(400, {"error": "x"}),
           Fake(503, {"detail": {"type": "t", "message": "m", "code": 503, "origin": "Humanloop"}})]
    for response in bad:
        with pytest.raises(AssertionError):
            assert_v4_response(response, "POST", "/v4/chat")
    assert_v4_response(Fake(422, {"detail": [{"loc": ["body", 0], "msg": "x", "type": "y"}]}), "POST", "/v4/chat")
    assert not math.isfinite(json.loads(non_finite_body("inputs", "1e400"))["inputs"]["x"])
