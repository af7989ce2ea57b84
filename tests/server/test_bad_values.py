"""Values that are valid JSON (or valid types) but that the server cannot serve: each a 422 with
the usual ``loc``/``msg``/``type`` body, before anything is stored (issue 10).

Why: Python's JSON parser accepts ``NaN``/``Infinity``/``1e400`` and lone surrogates (pitfalls 16,
17); taken as they come, they fail only when the response or the SQLite row is encoded — a 500
after the log was written, or a stream cut mid-way. Knobs such as ``other.mock_latency_ms`` and
``other.timeout`` are free-form in the wire schema, so their bounds are ours to check.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.server.helpers import HELLO, json_error, mock_config, send, unique

CANARY = "sk-CANARY-bad-values-3c1"


def post_raw(server, path: str, text: str) -> requests.Response:
    """POST a body written by hand: ``NaN`` and lone surrogates cannot come from ``requests``' json=."""
    return requests.post(server.base_url + path, data=text.encode("utf-8", "surrogatepass"), timeout=60,
                         headers={**server.headers, "Content-Type": "application/json"})


def project_names(server) -> set[str]:
    return {p["name"] for p in server.get("/projects", params={"size": 1000}).json()["records"]}


def assert_422_at(response: requests.Response, loc: list[Any]) -> None:
    items = json_error(response, 422)["detail"]
    assert all(set(item) == {"loc", "msg", "type"} for item in items), items
    assert loc in [item["loc"] for item in items], items
    assert CANARY not in response.text


def chat_text(project: str, *, config: str = '{"model": "m", "provider": "mock", "temperature": 0}',
              extra: str = "", messages: str = '[{"role": "user", "content": "hi"}]') -> str:
    """A /chat body as text, so that non-finite numbers and escapes go on the wire as written."""
    return (f'{{"project": "{project}", "model_config": {config}, "messages": {messages}, '
            f'"provider_api_keys": {{"openai": "{CANARY}"}}{extra}}}')


NON_FINITE = {
    "NaN temperature": ('{"model": "m", "provider": "mock", "temperature": NaN}', "",
                        ["body", "model_config", "temperature"]),
    "1e400 temperature": ('{"model": "m", "provider": "mock", "temperature": 1e400}', "",
                          ["body", "model_config", "temperature"]),
    "Infinity in metadata": (None, ', "metadata": {"score": Infinity}', ["body", "metadata", "score"]),
    "-Infinity in inputs": (None, ', "inputs": {"a": [1, -Infinity]}', ["body", "inputs", "a", 1]),
    "NaN in other": ('{"model": "m", "provider": "mock", "other": {"x": NaN}}', "",
                     ["body", "model_config", "other", "x"]),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", NON_FINITE)
def test_non_finite_numbers_are_422_and_nothing_is_stored(server, case, stream):
    config, extra, loc = NON_FINITE[case]
    project = unique("non-finite")
    text = chat_text(project, extra=extra + (', "stream": true' if stream else ""),
                     **({"config": config} if config else {}))
    assert_422_at(post_raw(server, "/chat", text), loc)
    assert project not in project_names(server)


SURROGATES = {
    "in content": (chat_text("{p}", messages='[{"role": "user", "content": "a\\ud800b"}]'),
                   ["body", "messages", 0, "content"]),
    "in a text part": (chat_text("{p}",
                                 messages='[{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]'),
                       ["body", "messages", 0, "content", 0, "text"]),
    "in an input key": (chat_text("{p}", extra=', "inputs": {"\\ud800": 1}'), ["body", "inputs"]),
    "in an input value": (chat_text("{p}", extra=', "inputs": {"k": "\\ud800"}'), ["body", "inputs", "k"]),
    "in metadata": (chat_text("{p}", extra=', "metadata": {"m": ["\\udbff"]}'), ["body", "metadata", "m", 0]),
}


@pytest.mark.parametrize("case", SURROGATES)
def test_lone_surrogates_in_a_chat_body_are_422_and_nothing_is_stored(server, case):
    template, loc = SURROGATES[case]
    project = unique("surrogate")
    assert_422_at(post_raw(server, "/chat", template.replace("{p}", project)), loc)
    assert project not in project_names(server)


def test_lone_surrogate_in_a_project_name_is_422(server):
    before = project_names(server)
    assert_422_at(post_raw(server, "/chat", chat_text("x\\ud800")), ["body", "project"])
    assert_422_at(post_raw(server, "/projects", '{"name": "p\\ud800"}'), ["body", "name"])
    assert_422_at(post_raw(server, "/model-configs", '{"project": "\\ud800", "model": "m", "provider": "mock"}'),
                  ["body", "project"])
    assert project_names(server) == before


@pytest.mark.parametrize("part", [{"type": "text", "text": 5}, {"type": "text", "text": None},
                                  {"type": "text"}, {"type": "image_url", "image_url": {"url": 7}},
                                  {"type": "image_url"}])
def test_content_parts_of_the_wrong_shape_are_422(server, part):
    project = unique("bad-part")
    body = {"project": project, "model_config": mock_config(), "messages": [{"role": "user", "content": [part]}]}
    items = json_error(send(server, "POST", "/chat", body), 422)["detail"]
    assert [item["loc"] for item in items] == [["body", "messages", 0, "content"]], items
    assert all(set(item) == {"loc", "msg", "type"} for item in items)
    assert project not in project_names(server)


@pytest.mark.parametrize("knob", ["mock_latency_ms", "mock_token_delay_ms"])
@pytest.mark.parametrize("value", [-1, "abc", "10", True, 60_001, 10**12, [1]])
@pytest.mark.parametrize("stream", [False, True])
def test_mock_knobs_out_of_range_are_422(server, knob, value, stream):
    project = unique("mock-knob")
    body = {"project": project, "model_config": mock_config(other={knob: value}), "messages": HELLO, "stream": stream}
    assert_422_at(send(server, "POST", "/chat", body), ["body", "model_config", "other", knob])
    assert project not in project_names(server)


def test_mock_knobs_at_their_bounds_are_accepted(server):
    body = {"project": unique("mock-knob-ok"), "messages": HELLO,
            "model_config": mock_config(other={"mock_latency_ms": 0, "mock_token_delay_ms": 0.0})}
    assert send(server, "POST", "/chat", body).status_code == 200


def test_registering_a_config_with_a_bad_knob_is_422(server):
    body = {"project": unique("register-knob"), **mock_config(other={"mock_latency_ms": -5})}
    assert_422_at(send(server, "POST", "/model-configs", body), ["body", "other", "mock_latency_ms"])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("timeout", ["abc", 0, -1, True, {"read": 1}, 10**9])
def test_pass_through_timeout_must_be_a_positive_number(server, provider, timeout):
    project = unique("timeout")
    config = {"model": "gpt-x", "provider": provider, "other": {"timeout": timeout, "base_url": "http://127.0.0.1:9"}}
    body = {"project": project, "model_config": config, "messages": HELLO,
            "provider_api_keys": {provider: CANARY}}
    assert_422_at(send(server, "POST", "/chat", body), ["body", "model_config", "other", "timeout"])
    assert project not in project_names(server)


@pytest.mark.parametrize("path", ["/logs", "/projects"])
@pytest.mark.parametrize("page", [10**17, 2**63, -1])
def test_huge_or_negative_pages_are_422(server, path, page):
    project_id = server.get("/projects").json()["records"][0]["id"] if path == "/logs" else None
    params: dict[str, Any] = {"page": page, **({"project_id": project_id} if project_id else {})}
    assert_422_at(server.get(path, params=params), ["query", "page"])


def test_a_valid_body_with_finite_numbers_still_works(server):
    body = {"project": unique("finite"), "model_config": mock_config(temperature=0.5, top_p=1e-300),
            "messages": HELLO, "metadata": {"big": 1e308, "small": -1e-308, "text": "ünïcødé 😀"},
            "inputs": {"x": 1.5}}
    response = send(server, "POST", "/chat", body)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"big": 1e308, "small": -1e-308, "text": "ünïcødé 😀"}
    assert json.loads(response.text)["data"][0]["inputs"] == {"x": 1.5}
