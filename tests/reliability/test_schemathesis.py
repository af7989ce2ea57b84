"""Schemathesis against the server's own OpenAPI document: generated requests (valid and not) never
get a 5xx, and every error is a structured JSON body."""
from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from hl_notebook.server import ServerSettings, create_app

KEY = "schemathesis-key-1234"
APP = create_app(ServerSettings(api_key=KEY, db_path=str(Path(tempfile.mkdtemp()) / "st.sqlite")))
schema = schemathesis.openapi.from_asgi("/v4/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_structured_error_bodies(case):
    response = case.call(headers={"X-API-KEY": KEY})
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        content_type = response.headers["content-type"]
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/json")
        detail = response.json()["detail"]
        if isinstance(detail, list):  # 422 validation items carry only loc/msg/type (never the input)
            assert all(set(item) == {"loc", "msg", "type"} for item in detail)
        elif isinstance(detail, dict):  # the provider-error object
            assert set(detail) == {"type", "message", "code", "origin"}
        else:
            assert isinstance(detail, str) and detail
