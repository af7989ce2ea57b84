"""Schemathesis against the server's own OpenAPI document: generated requests (valid and not) never
get a 5xx, and every error is a structured JSON body."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from hl_notebook.server import ServerSettings, create_app
from support import closed_port_url

KEY = "schemathesis-key-1234"


# pass-through providers must never leave this machine: point them at a closed loopback port
os.environ["OPENAI_BASE_URL"] = closed_port_url() + "/v1"
os.environ["ANTHROPIC_BASE_URL"] = closed_port_url()
APP = create_app(ServerSettings(api_key=KEY, db_path=str(Path(tempfile.mkdtemp()) / "st.sqlite")))
schema = schemathesis.openapi.from_asgi("/v4/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_structured_error_bodies(case):
    config = case.body.get("model_config") if isinstance(case.body, dict) else None
    if isinstance(config, dict):
        config.pop("other", None)  # other.base_url could send a pass-through call off this machine
    if isinstance(case.body, dict) and isinstance(case.body.get("other"), dict):
        case.body.pop("other")
    response = case.call(headers={"X-API-KEY": KEY})
    # 502/503 are how unreachable providers are reported (spec §8); a 500 would be our bug
    assert response.status_code < 500 or response.status_code in (502, 503), (
        case.method, case.path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        content_type = response.headers["content-type"]
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/json")
        detail = response.json()["detail"]
        if isinstance(detail, list):  # 422 validation items carry only loc/msg/type (never the input)
            assert all(set(item) == {"loc", "msg", "type"} for item in detail)
        elif isinstance(detail, dict):  # the provider-error object
            assert set(detail) == {"type", "message", "code", "origin"}
            assert response.status_code < 500 or detail["origin"] in ("OpenAI", "Anthropic")
        else:
            assert isinstance(detail, str) and detail
