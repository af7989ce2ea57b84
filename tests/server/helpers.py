"""Helpers the server tests share: ids, unique names, mock configs, checked requests, SSE parsing.

Why: every server test file talks to the real server the same way; one copy of each helper keeps
their assertions (status, JSON content type, SSE framing) the same everywhere.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from typing import Any
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

HELLO = [{"role": "user", "content": "hello there world"}]
CHAT_PATHS = ("/chat", "/chat-deployed", "/chat-experiment", "/chat-model-config")
EVENT = re.compile(rb"data: \{.*\}")
FAKE_PROVIDER_KEY = "sk-FAKE-PROVIDER-CANARY-11"  # the only key the ``fake_openai`` fixture accepts


def id_pattern(prefix: str) -> re.Pattern[str]:
    """spec §9: ``prefix_`` + 21 alphanumerics."""
    return re.compile(rf"{prefix}_[A-Za-z0-9]{{21}}")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def mock_config(model: str = "mock-model", **params: Any) -> dict[str, Any]:
    """An inline config for the deterministic mock provider (temperature 0 unless given)."""
    return {"model": model, "provider": "mock", "temperature": 0, **params}


def json_error(response: requests.Response, status: int) -> Any:
    """The JSON body of an error response, after checking its status and content type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def ok(response: requests.Response) -> Any:
    return json_error(response, 200)


def send(server, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         **kwargs: Any) -> requests.Response:
    """Any request, with the server's key unless ``headers`` says otherwise."""
    return requests.request(method, server.base_url + path, json=body,
                            headers=server.headers if headers is None else headers, timeout=60, **kwargs)


def patch(server, path: str, body: dict[str, Any]) -> requests.Response:
    return send(server, "PATCH", path, body)


def chat(server, body: dict[str, Any], path: str = "/chat") -> dict[str, Any]:
    """A non-streaming chat call that must succeed."""
    return ok(server.post(path, body))


def logs(server, project_id: str) -> list[dict[str, Any]]:
    """Every stored log of a project (first 1000), oldest first."""
    return ok(server.get("/logs", params={"project_id": project_id, "size": 1000}))["records"]


def registered(server, **body: Any) -> dict[str, Any]:
    """POST /model-configs: the ProjectConfigResponse (``project_id``, ``config``…)."""
    return ok(server.post("/model-configs", body))


def register(server, project: str, **config: Any) -> str:
    """Register ``config`` in the project named ``project``; its config id."""
    return registered(server, project=project, **config)["config"]["id"]


def experiment(server, project_id: str, config_ids: list[str]) -> str:
    body = {"name": unique("exp"), "positive_labels": [{"type": "rating", "value": "good"}],
            "config_ids": config_ids}
    return ok(server.post(f"/projects/{project_id}/experiments", body))["id"]


def parse_events(response: requests.Response) -> list[dict[str, Any]]:
    """The events of an SSE body, asserting the framing: ``data: <one-line JSON>`` + blank line each."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "text/event-stream"
    raw = response.content
    assert raw.endswith(b"\n\n") and b"\r" not in raw
    events = []
    for chunk in raw[:-2].split(b"\n\n"):
        assert EVENT.fullmatch(chunk), chunk  # one line (`.` does not match a newline), JSON object
        events.append(json.loads(chunk[len(b"data: "):]))
    assert b"[DONE]" not in raw
    return events


def by_index(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Streamed ``data[0]`` entries grouped by sample index, in arrival order."""
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        assert len(event["data"]) == 1
        grouped[event["data"][0]["index"]].append(event["data"][0])
    return grouped


def abandon_stream(server, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """POST a streaming /chat over a raw socket, read until the first event arrives, then hang up.
    Returns the bytes received (status line, headers, the first event)."""
    url = urlsplit(server.base_url)
    data = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (f"POST {url.path}/chat HTTP/1.1\r\nHost: {url.netloc}\r\nX-API-KEY: {server.api_key}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + data)
        received = b""
        while b"\ndata: " not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    return received


def sdk_report(command: list[str], db_path: Path, project: str, env: dict[str, str] | None = None,
               timeout: float = 300) -> dict[str, Any]:
    """Run an SDK conformance script against a server of its own (so other tests' projects cannot
    leak in) and return the JSON report it prints; the server is stopped afterwards."""
    from support import ServerProcess

    server = ServerProcess(db_path).start()
    try:
        environment = {**os.environ, "HL_BASE_URL": server.base_url, "HL_API_KEY": server.api_key,
                       "HL_SDK_PROJECT": project, **(env or {})}
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    finally:
        server.stop()
    assert done.returncode == 0, f"{Path(command[-1]).name} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)


def check_sdk_deployments(report: dict[str, Any], ids: dict[str, str]) -> None:
    """What both SDK scripts report of the experiment and the deployments: the experiment holds both
    configs, a project's first config is deployed until the script deploys the second, and the
    active config (of the project, and as the SDK reads it) is then the second."""
    assert report["experiment_config_ids"] == [ids["config_a"], ids["config_b"]]
    assert report["deployed_before"] == {"production": ids["config_a"]}  # a project's first config
    assert report["deployed_after"] == {"production": ids["config_b"]}
    assert report["active_config_id"] == report["project_active_config_id"] == ids["config_b"]


def check_sdk_feedback(feedback: dict[str, Any], ids: dict[str, str], experiment_chat: dict[str, Any]) -> None:
    """What both SDK scripts report of their feedback: one item (action/copy) and a list stored as
    sent, and the experiment's statistics read back through the SDK — the action on the first log
    is a success, the rating on the second a trial of no positive label's type, so not one — and
    after the unset of the second log's action, one trial fewer."""
    first_log, second_log = feedback["logs"]
    one = feedback["one"]
    assert one == {"id": one["id"], "type": "action", "value": "copy", "data_id": first_log,
                   "user": "sdk@example.com", "created_at": "2024-03-01T12:00:00+00:00"}
    assert [(f["type"], f["value"], f["data_id"]) for f in feedback["many"]] == [
        ("rating", "good", second_log), ("action", "share", second_log)]
    config_of = dict(zip(experiment_chat["ids"], experiment_chat["model_config_ids"], strict=True))
    successes = {ids["config_a"]: 0, ids["config_b"]: 0}
    trials = dict(successes)
    for log_id, success in ((first_log, 1), (second_log, 0)):  # the rating is not a positive label's type
        trials[config_of[log_id]] += 1
        successes[config_of[log_id]] += success
    stats = feedback["stats"]
    assert {c: s["trials_count"] for c, s in stats.items()} == trials
    for config_id, s in stats.items():
        assert s["mean"] == pytest.approx((1 + successes[config_id]) / (2 + trials[config_id]))
        assert 0 < s["spread"] < 0.9 if trials[config_id] else s["spread"] == pytest.approx(0.9)
    assert feedback["sampled"]["experiment_id"] == ids["experiment"]
    assert feedback["sampled"]["config_id"] in (ids["config_a"], ids["config_b"])
    trials[config_of[second_log]] -= 1  # unset removed its only feedback of a positive label's type
    assert {c: s["trials_count"] for c, s in feedback["stats_after_unset"].items()} == trials


def sigterm_cancels_the_waiting_call(server, waiting: threading.Thread, answers: list[requests.Response]) -> None:
    """SIGTERM to ``server`` while ``waiting`` waits on its call: the server is gone within 5 s
    (it does not wait for the call) and the call is answered 502 ``upstream_cancelled``."""
    began = time.monotonic()
    server.process.terminate()
    server.process.wait(15)
    assert time.monotonic() - began < 5
    waiting.join(5)
    assert answers and answers[0].status_code == 502, answers
    assert answers[0].json()["detail"]["type"] == "upstream_cancelled"
