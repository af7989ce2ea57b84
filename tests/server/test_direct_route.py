"""DirectRoute: a valid, authorised JSON chat body skips FastAPI's dependencies; everything else is FastAPI's."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from hl_notebook.server import ServerSettings, create_app
from hl_notebook.server.auth import require_api_key_and_clean_body

KEY = "direct-route-key"
BODY = {"project": "direct", "model_config": {"model": "m", "provider": "mock", "temperature": 0},
        "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture()
def client(tmp_path: Path):
    with TestClient(create_app(ServerSettings(api_key=KEY, db_path=str(tmp_path / "d.sqlite")))) as client:
        yield client


def test_a_valid_authorised_body_is_answered(client: TestClient) -> None:
    response = client.post("/v4/chat", json=BODY, headers={"X-API-KEY": KEY})
    assert response.status_code == 200
    assert response.json()["data"][0]["output"] == "m: hi"


@pytest.mark.parametrize("headers, body, status", [
    ({}, BODY, 401),                                                    # no key: 401, before the body
    ({"X-API-KEY": "wrong"}, {"nonsense": 1}, 401),                      # a wrong key, even with a bad body
    ({"X-API-KEY": KEY}, {"messages": []}, 422),                          # invalid for the schema
    ({"X-API-KEY": KEY, "Content-Type": "application/json; charset=utf-8"}, BODY, 200),  # FastAPI's path
])
def test_everything_else_is_fastapis_answer(client: TestClient, headers, body, status) -> None:
    assert client.post("/v4/chat", json=body, headers=headers).status_code == status


def test_bad_json_and_bad_values_keep_fastapis_422_bodies(client: TestClient) -> None:
    broken = client.post("/v4/chat", content=b'{"project": ', headers={"X-API-KEY": KEY, "Content-Type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    nan = client.post("/v4/chat", content=b'{"project": "p", "metadata": NaN, "messages": []}',
                      headers={"X-API-KEY": KEY, "Content-Type": "application/json"})
    assert nan.status_code == 422 and nan.json()["detail"][0]["type"] == "finite_number"


def test_dependency_overrides_still_apply(client: TestClient) -> None:
    def refuse() -> None:
        raise HTTPException(status_code=403, detail="overridden")

    client.app.dependency_overrides[require_api_key_and_clean_body] = refuse
    try:
        assert client.post("/v4/chat", json=BODY, headers={"X-API-KEY": KEY}).status_code == 403
    finally:
        client.app.dependency_overrides.clear()
