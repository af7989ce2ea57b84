"""``GET /v4/server-info``: exact body, the API key required, and the providers it lists are exactly
the ones a chat call accepts."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import hl_notebook
from hl_notebook.server import ServerSettings, create_app
from hl_notebook.server.providers import ProviderError, get_provider
from support import SERVED_PROVIDERS

KEY = "test-key-info"


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(ServerSettings(api_key=KEY, db_path=str(tmp_path / "info.sqlite")))) as test_client:
        yield test_client


def test_server_info_lists_the_providers_and_the_version(client):
    response = client.get("/v4/server-info", headers={"X-API-KEY": KEY})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"providers": list(SERVED_PROVIDERS), "version": hl_notebook.__version__}


@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong"}])
def test_server_info_needs_the_api_key(client, headers):
    response = client.get("/v4/server-info", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid or missing X-API-KEY"}


def test_listed_providers_are_the_ones_chat_accepts(client):
    listed = client.get("/v4/server-info", headers={"X-API-KEY": KEY}).json()["providers"]
    for name in listed:
        get_provider(name)
    for name in ("cohere", "openai_azure", "base", "upstream"):
        with pytest.raises(ProviderError):
            get_provider(name)
