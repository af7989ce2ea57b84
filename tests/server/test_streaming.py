"""Streaming (``stream: true``) over real HTTP: SSE framing byte for byte and event contents.

Why: the SDKs read the body line by line and keep only ``data: `` lines of one-line JSON, and
concatenate ``data[0].output`` deltas (spec §7, decisions table); a framing slip breaks them silently.
"""
from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.server.helpers import FAKE_PROVIDER_KEY, HELLO, by_index, logs, mock_config, parse_events, unique

DATA_ID = re.compile(r"data_[A-Za-z0-9]{21}")


def post(server, path: str, body: dict[str, Any], accept: str = "application/json") -> requests.Response:
    """POST as the official SDK does: ``Accept: application/json`` even when streaming (spec §1)."""
    return requests.post(server.base_url + path, json=body, headers={**server.headers, "Accept": accept},
                         timeout=60)


def test_framing_is_data_only_one_line_json_events_ending_in_a_blank_line(server):
    body = {"project": unique("framing"), "model_config": mock_config(), "messages": HELLO, "stream": True,
            "num_samples": 2}
    response = post(server, "/chat", body)
    events = parse_events(response)
    assert len(events) >= 4  # at least one delta and one final event per sample
    lines = response.content.split(b"\n")
    assert lines[-2:] == [b"", b""]
    assert all(line == b"" for line in lines[1::2])  # every event line followed by one blank line
    assert all(line.startswith(b"data: {") for line in lines[0:-2:2])


@pytest.mark.parametrize("accept", ["application/json", "*/*", "text/event-stream"])
def test_streaming_is_decided_by_the_body_not_the_accept_header(server, accept):
    body = {"project": unique("accept"), "model_config": mock_config(), "messages": HELLO}
    streamed = post(server, "/chat", {**body, "stream": True}, accept=accept)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert parse_events(streamed)
    plain = post(server, "/chat", {**body, "stream": False}, accept=accept)
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"
    assert plain.json()["data"][0]["output"] == "mock-model: hello there world"


@pytest.mark.parametrize("temperature", [0, 1])
def test_deltas_concatenate_to_the_non_streaming_output(server, temperature):
    config = mock_config(temperature=temperature, chat_template=[{"role": "system", "content": "On {{topic}}"}])
    body = {"project": unique("deltas"), "model_config": config, "inputs": {"topic": "tea"}, "num_samples": 2,
            "messages": [{"role": "user", "content": "tell me about {{topic}} please"}]}
    expected = post(server, "/chat", body).json()
    grouped = by_index(parse_events(post(server, "/chat", {**body, "stream": True})))
    assert sorted(grouped) == [0, 1]
    for index, entries in grouped.items():
        assert "".join(e["output"] for e in entries) == expected["data"][index]["output"]
    if temperature == 0:
        assert expected["data"][0]["output"] == "mock-model: tell me about tea please"


def test_finish_reason_output_message_and_usage_only_on_each_samples_last_event(server):
    body = {"project": unique("final"), "model_config": mock_config(temperature=1), "messages": HELLO,
            "num_samples": 2, "user": "u-1", "metadata": {"m": 1}}
    expected = post(server, "/chat", body).json()
    events = parse_events(post(server, "/chat", {**body, "stream": True}))
    last_event: dict[int, dict[str, Any]] = {}
    for event in events:
        entry = event["data"][0]
        assert event["project_id"] == expected["project_id"]
        assert event["provider_responses"] == [] and event["num_samples"] == 2
        assert event["user"] == "u-1" and event["metadata"] == {"m": 1}
        assert DATA_ID.fullmatch(entry["id"]) and isinstance(entry["output"], str)
        assert entry["model_config_id"] == expected["data"][0]["model_config_id"]
        last_event[entry["index"]] = event
    grouped = by_index(events)
    for index, entries in grouped.items():
        *middle, last = entries
        assert middle and all(e["finish_reason"] is None for e in middle)
        assert all(e["output_message"]["content"] is None for e in middle)
        assert last["finish_reason"] == "stop"
        full = expected["data"][index]["output"]
        assert last["output_message"]["role"] == "assistant" and last["output_message"]["content"] == full
        assert len({e["id"] for e in entries}) == 1
        assert last_event[index]["usage"] == expected["usage"]
    assert grouped[0][0]["id"] != grouped[1][0]["id"]
    assert all(event["usage"] is None for event in events if event["data"][0]["finish_reason"] is None)


def test_max_tokens_streams_a_length_finish(server):
    body = {"project": unique("length"), "model_config": mock_config(max_tokens=2), "messages": HELLO,
            "stream": True}
    entries = by_index(parse_events(post(server, "/chat", body)))[0]
    assert "".join(e["output"] for e in entries) == "mock-model: hello"
    assert entries[-1]["finish_reason"] == "length"


def test_streamed_samples_are_logged_with_their_full_output(server):
    body = {"project": unique("stream-logs"), "model_config": mock_config(), "messages": HELLO, "stream": True,
            "num_samples": 2, "session_reference_id": unique("ref")}
    events = parse_events(post(server, "/chat", body))
    ids = {e["data"][0]["index"]: e["data"][0]["id"] for e in events}
    finals = [e for e in events if e["data"][0]["finish_reason"]]
    assert len(finals) == 2 and all(e["session_id"].startswith("sesh_") for e in finals)
    stored = server.get("/logs", params={"project_id": events[0]["project_id"]}).json()["records"]
    assert [(log["id"], log["output"], log["finish_reason"]) for log in stored] == [
        (ids[0], "mock-model: hello there world", "stop"), (ids[1], "mock-model: hello there world", "stop")]


@pytest.fixture(scope="module")
def registered(server) -> dict[str, str]:
    name = unique("stream-endpoints")
    response = server.post("/model-configs", {"project": name, **mock_config("reg-stream")})
    assert response.status_code == 200, response.text
    project_id, config_id = response.json()["project_id"], response.json()["config"]["id"]
    created = server.post(f"/projects/{project_id}/experiments",
                          {"name": "e", "positive_labels": [{"type": "t", "value": "v"}], "config_ids": [config_id]})
    assert created.status_code == 200, created.text
    return {"project_id": project_id, "config_id": config_id, "experiment_id": created.json()["id"]}


@pytest.mark.parametrize("path", ["/chat-deployed", "/chat-experiment", "/chat-model-config"])
def test_every_endpoint_streams(server, registered, path):
    selector = {"/chat-deployed": {"project_id": registered["project_id"]},
                "/chat-experiment": {"experiment_id": registered["experiment_id"]},
                "/chat-model-config": {"model_config_id": registered["config_id"]}}[path]
    events = parse_events(post(server, path, {**selector, "messages": HELLO, "stream": True}))
    entries = by_index(events)[0]
    assert "".join(e["output"] for e in entries) == "reg-stream: hello there world"
    assert {e["model_config_id"] for e in entries} == {registered["config_id"]}
    assert entries[-1]["finish_reason"] == "stop"


def test_experiment_samples_stream_under_their_own_index_and_config(server):
    first = server.post("/model-configs", {"project": unique("stream-exp"), **mock_config("model-a")}).json()
    project_id, config_a = first["project_id"], first["config"]["id"]
    config_b = server.post("/model-configs", {"project_id": project_id, **mock_config("model-b")}).json()["config"]["id"]
    experiment_id = server.post(f"/projects/{project_id}/experiments", {
        "name": "e", "positive_labels": [], "config_ids": [config_a, config_b]}).json()["id"]
    body = {"experiment_id": experiment_id, "messages": HELLO, "stream": True, "num_samples": 40}
    grouped = by_index(parse_events(post(server, "/chat-experiment", body)))
    assert sorted(grouped) == list(range(40))
    models = {config_a: "model-a", config_b: "model-b"}
    used = set()
    for entries in grouped.values():
        (config_id,) = {e["model_config_id"] for e in entries}
        used.add(config_id)
        assert "".join(e["output"] for e in entries) == f"{models[config_id]}: hello there world"
        assert [e["finish_reason"] for e in entries].count("stop") == 1 and entries[-1]["finish_reason"] == "stop"
    assert used == {config_a, config_b}  # P(one config only) = 2**-39


@pytest.mark.parametrize("path,body,status", [
    ("/chat", {"model_config": mock_config(chat_template=[{"role": "system", "content": "{{gone}}"}])}, 422),
    ("/chat-model-config", {"model_config_id": "config_000000000000000000000"}, 404),
])
def test_errors_found_before_streaming_are_plain_json(server, path, body, status):
    response = post(server, path, {**body, "messages": HELLO, "stream": True})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "detail" in response.json()


def test_error_mid_stream_is_one_detail_event_then_close_and_is_logged(server, fake_openai):
    config = {"model": "error-stream", "provider": "openai", "other": {"base_url": fake_openai}}
    body = {"project": unique("mid-stream"), "model_config": config, "messages": HELLO, "stream": True,
            "provider_api_keys": {"openai": FAKE_PROVIDER_KEY}}
    response = post(server, "/chat", body)
    events = parse_events(response)
    *deltas, last = events
    assert deltas and all(e["data"][0]["finish_reason"] is None for e in deltas)
    assert list(last) == ["detail"]
    assert set(last["detail"]) == {"type", "message", "code", "origin"}
    assert last["detail"]["origin"] == "OpenAI" and isinstance(last["detail"]["code"], int)
    assert FAKE_PROVIDER_KEY not in response.text
    partial = "".join(e["data"][0]["output"] for e in deltas)
    stored = server.get("/logs", params={"project_id": deltas[0]["project_id"]})
    (log,) = stored.json()["records"]
    assert (log["id"], log["output"], log["error"]) == (deltas[0]["data"][0]["id"], partial, last["detail"])
    assert FAKE_PROVIDER_KEY not in stored.text


def test_pass_through_stream_keeps_the_framing(server, fake_openai):
    config = {"model": "gpt-fake", "provider": "openai", "other": {"base_url": fake_openai}}
    body = {"project": unique("pass-stream"), "model_config": config, "messages": HELLO, "num_samples": 2,
            "provider_api_keys": {"openai": FAKE_PROVIDER_KEY}}
    expected = post(server, "/chat", body).json()
    grouped = by_index(parse_events(post(server, "/chat", {**body, "stream": True})))
    for index in (0, 1):
        assert "".join(e["output"] for e in grouped[index]) == expected["data"][index]["output"] == \
            "echo: hello there world"
        assert grouped[index][-1]["finish_reason"] == "stop"


def pass_through(model: str, fake_openai: str, **body: Any) -> dict[str, Any]:
    config = {"model": model, "provider": "openai", "other": {"base_url": fake_openai}}
    return {"project": unique(model), "model_config": config, "messages": HELLO,
            "provider_api_keys": {"openai": FAKE_PROVIDER_KEY}, **body}


def test_any_exception_mid_stream_is_the_error_event_then_close_and_a_log(server, fake_openai):
    """A bug (here: a provider delta that is a number) must not cut the stream: the spec's error
    event ends it, and the call is logged with the text sent so far."""
    events = parse_events(post(server, "/chat", pass_through("number-delta", fake_openai, stream=True)))
    *deltas, last = events
    assert deltas and all(e["data"][0]["finish_reason"] is None for e in deltas)
    assert last == {"detail": {"type": "internal_error", "message": "internal server error", "code": 500,
                               "origin": "Humanloop"}}
    (log,) = logs(server, deltas[0]["project_id"])
    assert (log["output"], log["error"]) == ("".join(e["data"][0]["output"] for e in deltas), last["detail"])


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_nan_and_lone_surrogates_are_cleaned_before_they_reach_anyone(server, fake_openai, stream):
    """An upstream's ``NaN``/``Infinity`` usage is no usage (``usage: null``, never a guess: issue 16.3)
    and its lone surrogates become U+FFFD: the answer is strict JSON, never a bare NaN, and the log is stored."""
    response = post(server, "/chat", pass_through("nan-usage", fake_openai, stream=stream))
    assert b"NaN" not in response.content and b"Infinity" not in response.content
    assert b"\\ud800" not in response.content
    if stream:
        final = [e for e in parse_events(response) if e["data"][0]["finish_reason"]][0]
        usage, project_id, output = final["usage"], final["project_id"], final["data"][0]["output_message"]["content"]
    else:
        assert response.status_code == 200, response.text
        usage, project_id, output = response.json()["usage"], response.json()["project_id"], \
            response.json()["data"][0]["output"]
    assert output == "echo: hello there world \ufffd"
    assert usage is None
    (log,) = logs(server, project_id)
    assert log["output"] == output and log["error"] is None
