"""The chat write path's shortcuts keep its results: the response encoded once for the reply and the
idempotency record, and an inline config registered once per process only after a commit (issue 15)."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hl_notebook.server import ServerSettings, create_app

KEY = "write-path-key"
CONFIG = {"model": "m", "provider": "mock", "temperature": 0.9}


def body(project: str, text: str = "hi") -> dict:
    return {"project": project, "model_config": CONFIG, "messages": [{"role": "user", "content": text}]}


@pytest.fixture()
def client(tmp_path: Path):
    app = create_app(ServerSettings(api_key=KEY, db_path=str(tmp_path / "w.sqlite")))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_replay_is_the_first_answers_bytes(client: TestClient) -> None:
    headers = {"X-API-KEY": KEY, "Idempotency-Key": "k-bytes"}
    first = client.post("/v4/chat", json=body("bytes", "héllo ✓"), headers=headers)
    again = client.post("/v4/chat", json=body("bytes", "héllo ✓"), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content and first.headers["content-type"] == "application/json"
    assert int(first.headers["content-length"]) == len(first.content)


def test_a_config_whose_first_write_failed_is_registered_by_the_next_call(client: TestClient, monkeypatch) -> None:
    store = client.app.state.store
    real = store.write_logs
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_logs", failing_once)
    failed = client.post("/v4/chat", json=body("cfg"), headers={"X-API-KEY": KEY})
    assert failed.status_code == 500
    done = client.post("/v4/chat", json=body("cfg"), headers={"X-API-KEY": KEY})
    assert done.status_code == 200
    config_id = done.json()["data"][0]["model_config_id"]
    assert client.get(f"/v4/model-configs/{config_id}", headers={"X-API-KEY": KEY}).status_code == 200
    # a third call with the same config skips registering it and logs under it all the same
    third = client.post("/v4/chat", json=body("cfg", "again"), headers={"X-API-KEY": KEY})
    assert third.json()["data"][0]["model_config_id"] == config_id
