"""``Idempotency-Key`` on the chat POSTs: a retry of a call that completed gets the stored result,
without calling the provider again or writing another log (issue 10).

Why: the client retries a call whose answer it never got (a read timeout, a dropped connection, a
``retry(df)`` from another process) with the same key; only the server knows whether the call ran,
and a blind retry would record it twice.
"""
from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from fastapi import HTTPException

from hl_notebook.server.idempotency import InFlight

from tests.server.helpers import (CHAT_PATHS, FAKE_PROVIDER_KEY, HELLO, abandon_stream, by_index, json_error, logs,
                                  mock_config, parse_events, unique)

HEADER = "Idempotency-Key"


def post(server, body: dict[str, Any], key: str | None, path: str = "/chat") -> requests.Response:
    headers = {**server.headers, **({HEADER: key} if key is not None else {})}
    return requests.post(server.base_url + path, json=body, headers=headers, timeout=60)


def project_logs(server, name: str) -> list[dict[str, Any]]:
    found = [p["id"] for p in server.get("/projects", params={"size": 1000}).json()["records"] if p["name"] == name]
    return logs(server, found[0]) if found else []


def chat_body(project: str, **extra: Any) -> dict[str, Any]:
    return {"project": project, "model_config": mock_config(temperature=1), "messages": HELLO, "num_samples": 2,
            **extra}


def test_a_completed_call_is_answered_again_from_the_store(server):
    project, key = unique("idem"), unique("key")
    first = post(server, chat_body(project), key)
    assert first.status_code == 200
    stored = project_logs(server, project)
    assert len(stored) == 2
    # provider keys are not part of what the call is: a retry may carry others
    again = post(server, chat_body(project, provider_api_keys={"mock": "other"}), key)
    assert again.status_code == 200
    assert again.headers["content-type"] == "application/json"
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert project_logs(server, project) == stored


def test_requests_without_a_key_behave_as_before(server):
    project = unique("no-key")
    first, second = post(server, chat_body(project), None), post(server, chat_body(project), None)
    assert first.json()["data"][0]["id"] != second.json()["data"][0]["id"]
    assert len(project_logs(server, project)) == 4


def test_a_completed_stream_is_replayed_as_events_of_the_usual_shape(server):
    project, key = unique("idem-stream"), unique("key")
    body = chat_body(project, stream=True)
    first = parse_events(post(server, body, key))
    stored = project_logs(server, project)
    replayed = parse_events(post(server, body, key))
    assert project_logs(server, project) == stored
    original, again = by_index(first), by_index(replayed)
    assert sorted(again) == [0, 1]
    for index in (0, 1):
        assert "".join(e["output"] for e in again[index]) == "".join(e["output"] for e in original[index])
        *middle, last = again[index]
        assert middle and all(e["finish_reason"] is None and e["output_message"]["content"] is None for e in middle)
        assert {e["id"] for e in again[index]} == {original[index][0]["id"]}
        for name in ("finish_reason", "output_message", "model_config_id", "tool_calls"):
            assert last[name] == original[index][-1][name], name
    finals = [e for e in replayed if e["data"][0]["finish_reason"]]
    originals = [e for e in first if e["data"][0]["finish_reason"]]
    assert [(e["usage"], e["session_id"], e["project_id"]) for e in finals] == \
        [(e["usage"], e["session_id"], e["project_id"]) for e in originals]
    # and the same call asked for without streaming: the stored result as one body
    plain = post(server, {**body, "stream": False}, key)
    assert plain.status_code == 200
    assert [(d["id"], d["output"]) for d in plain.json()["data"]] == \
        [(original[i][0]["id"], "".join(e["output"] for e in original[i]).strip()) for i in (0, 1)]
    assert project_logs(server, project) == stored


def test_a_key_reused_with_another_body_is_422_naming_the_header(server):
    project, key = unique("idem-reuse"), unique("key")
    assert post(server, chat_body(project), key).status_code == 200
    for body, path in [(chat_body(project, messages=[{"role": "user", "content": "something else"}]), "/chat"),
                       (chat_body(project, num_samples=3), "/chat"),
                       ({"model_config_id": "config_x", "messages": HELLO}, "/chat-model-config")]:
        items = json_error(post(server, body, key, path), 422)["detail"]
        assert [item["loc"] for item in items] == [["header", HEADER]]
        assert set(items[0]) == {"loc", "msg", "type"}
    assert len(project_logs(server, project)) == 2


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_a_key_must_have_1_to_200_characters(server, key):
    items = json_error(post(server, chat_body(unique("idem-long")), key), 422)["detail"]
    assert [item["loc"] for item in items] == [["header", HEADER]]


def test_a_key_of_200_characters_is_fine(server):
    assert post(server, chat_body(unique("idem-200")), "k" * 200).status_code == 200


def test_a_failed_attempt_is_not_stored_and_the_key_runs_again(server, fake_openai):
    """A wrong provider key fails the call (logged with its error); the retry with the right key —
    the same call, as provider keys are not part of it — runs and succeeds."""
    project, key = unique("idem-fail"), unique("key")
    config = {"model": "gpt-fake", "provider": "openai", "other": {"base_url": fake_openai}}
    body = {"project": project, "model_config": config, "messages": HELLO}
    failed = post(server, {**body, "provider_api_keys": {"openai": "sk-wrong"}}, key)
    assert failed.status_code == 401
    ok = post(server, {**body, "provider_api_keys": {"openai": FAKE_PROVIDER_KEY}}, key)
    assert ok.status_code == 200 and ok.json()["data"][0]["output"] == "echo: hello there world"
    again = post(server, {**body, "provider_api_keys": {"openai": FAKE_PROVIDER_KEY}}, key)
    assert again.json() == ok.json()
    stored = project_logs(server, project)
    assert [log["error"]["type"] if log["error"] else None for log in stored] == ["authentication_error", None]


def test_the_same_key_twice_at_once_runs_the_call_once(server):
    """The second request waits for the first, then answers from what it stored."""
    project, key = unique("idem-race"), unique("key")
    body = {"project": project, "model_config": mock_config(other={"mock_latency_ms": 1000}), "messages": HELLO}
    results: list[requests.Response] = []
    first = threading.Thread(target=lambda: results.append(post(server, body, key)))
    before = server.get("/server-stats").json()["requests"]
    first.start()
    while server.get("/server-stats").json()["requests"] == before:  # the first has arrived
        pass
    second = post(server, body, key)
    first.join(60)
    assert results[0].status_code == second.status_code == 200
    assert second.json() == results[0].json()
    assert len(project_logs(server, project)) == 1


def test_a_stream_abandoned_before_it_finished_runs_again_on_retry(server):
    project, key = unique("idem-abandon"), unique("key")
    words = [{"role": "user", "content": " ".join(f"w{i}" for i in range(200))}]
    body = {"project": project, "model_config": mock_config(other={"mock_token_delay_ms": 5}), "messages": words,
            "stream": True}
    abandon_stream(server, body, {HEADER: key})
    retried = by_index(parse_events(post(server, body, key)))  # waits for the first to end, then runs
    assert "".join(e["output"] for e in retried[0]) == "mock-model: " + words[0]["content"]
    stored = project_logs(server, project)
    assert [log["error"]["type"] if log["error"] else None for log in stored] == ["client_closed", None]
    assert stored[1]["id"] == retried[0][0]["id"]


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_every_chat_endpoint_honours_the_key(server, path):
    project = unique("idem-path")
    registered = server.post("/model-configs", {"project": project, **mock_config()}).json()
    selector = {"/chat": {"project": project, "model_config": mock_config()},
                "/chat-deployed": {"project_id": registered["project_id"]},
                "/chat-experiment": {"experiment_id": server.post(
                    f"/projects/{registered['project_id']}/experiments",
                    {"name": "e", "positive_labels": [], "config_ids": [registered["config"]["id"]]}).json()["id"]},
                "/chat-model-config": {"model_config_id": registered["config"]["id"]}}[path]
    key = unique("key")
    first = post(server, {**selector, "messages": HELLO}, key, path)
    again = post(server, {**selector, "messages": HELLO}, key, path)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(logs(server, registered["project_id"])) == 1


def test_a_call_with_save_false_keeps_nothing_under_its_key(server):
    """``save: false`` keeps inputs, messages and outputs out of the store, so the response is not
    kept under the key either: a retry runs again (its logs hold no content, spec §2)."""
    project, key = unique("idem-unsaved"), unique("key")
    body = {**chat_body(project, inputs={"secret": "s3cret-input"}), "save": False}
    first, again = post(server, body, key), post(server, body, key)
    assert first.status_code == again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert first.json()["data"][0]["id"] != again.json()["data"][0]["id"]
    assert [log["output"] for log in project_logs(server, project)] == [None] * 4


def test_a_wait_for_a_running_key_ends_in_409_at_its_limit():
    """The wait has a bound (``ServerSettings.idempotency_wait``); past it the answer is a 409."""
    running = InFlight()
    running.enter("k", timeout=0)
    with pytest.raises(HTTPException) as raised:
        running.enter("k", timeout=0)
    assert raised.value.status_code == 409 and HEADER in raised.value.detail
    running.leave("k")
    running.enter("k", timeout=0)  # free again once the first left
