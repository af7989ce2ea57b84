"""The published OpenAPI of the four chat paths: a snapshot, and the wire names of spec §1–§3, §6.

Why: clients and generated SDKs are built from this document, so any change to a chat path or a
schema it reaches must be deliberate. The snapshot holds the four path items plus every component
they reference, transitively; regenerate it after an intended change with
``UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/server/test_openapi_snapshot.py``.
"""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from hl_notebook.server import ServerSettings, create_app

SNAPSHOT = Path(__file__).with_name("openapi_chat_snapshot.json")
REGENERATE = "UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/server/test_openapi_snapshot.py"
CHAT_PATHS = ("/v4/chat", "/v4/chat-deployed", "/v4/chat-experiment", "/v4/chat-model-config")
SCHEMA_REF = "#/components/schemas/"

# spec §2: fields common to the four bodies, with the defaults the spec gives
COMMON_FIELDS = {"messages", "project", "project_id", "session_id", "session_reference_id", "parent_id",
                 "parent_reference_id", "inputs", "source", "metadata", "save", "source_datapoint_id",
                 "provider_api_keys", "num_samples", "stream", "user", "seed", "return_inputs", "tool_choice",
                 "tool_call", "response_format"}
DEFAULTS = {"save": True, "num_samples": 1, "stream": False, "return_inputs": True}
# spec §3: per path, the operationId, the extra field and the required list
ENDPOINTS = {
    "/v4/chat": ("Chats_create", "model_config", ["messages", "model_config"]),
    "/v4/chat-deployed": ("Chats_createDeployed", "environment", ["messages"]),
    "/v4/chat-experiment": ("Chats_createExperiment", "experiment_id", ["messages", "experiment_id"]),
    "/v4/chat-model-config": ("Chats_createModelConfig", "model_config_id", ["messages", "model_config_id"]),
}
PROVIDER_KEYS = {"openai", "ai21", "mock", "anthropic", "cohere", "openai_azure", "openai_azure_endpoint"}  # §1


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = ServerSettings(api_key="x", db_path=str(tmp_path_factory.mktemp("openapi") / "db.sqlite"))
    return create_app(settings).openapi()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_REF):
            yield ref[len(SCHEMA_REF):]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def chat_surface(document: dict[str, Any]) -> dict[str, Any]:
    """The four path items, the component schemas they reach and the security schemes they use."""
    paths = {path: document["paths"][path] for path in CHAT_PATHS}
    schemas = document["components"]["schemas"]
    found: set[str] = set()
    pending = list(_refs(paths))
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(_refs(schemas[name]))
    security = {name for item in paths.values() for operation in item.values()
                for requirement in operation.get("security", []) for name in requirement}
    return {"paths": paths,
            "components": {"schemas": {name: schemas[name] for name in sorted(found)},
                           "securitySchemes": {name: document["components"]["securitySchemes"][name]
                                               for name in sorted(security)}}}


def render(surface: dict[str, Any]) -> str:
    return json.dumps(surface, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_chat_paths_match_the_snapshot(openapi):
    current = render(chat_surface(openapi))
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current, encoding="utf-8")
        return
    if not SNAPSHOT.exists():
        pytest.fail(f"{SNAPSHOT.name} is missing; create it with: {REGENERATE}")
    stored = SNAPSHOT.read_text(encoding="utf-8")
    if current != stored:
        diff = list(difflib.unified_diff(stored.splitlines(), current.splitlines(), "snapshot", "current",
                                         lineterm="", n=2))
        shown = "\n".join(diff[:60]) + (f"\n... {len(diff) - 60} more diff lines" if len(diff) > 60 else "")
        pytest.fail(f"the OpenAPI of the chat paths changed:\n{shown}\nif intended, regenerate: {REGENERATE}",
                    pytrace=False)


def _request_schema(openapi: dict[str, Any], path: str) -> dict[str, Any]:
    ref = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return openapi["components"]["schemas"][ref[len(SCHEMA_REF):]]


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_request_bodies_use_the_wire_names_of_the_spec(openapi, path):
    operation_id, extra, required = ENDPOINTS[path]
    operation = openapi["paths"][path]["post"]
    assert operation["operationId"] == operation_id
    assert operation["requestBody"]["required"] is True
    assert operation["security"] == [{"APIKeyHeader": []}]
    schema = _request_schema(openapi, path)
    assert set(schema["properties"]) == COMMON_FIELDS | {extra}
    assert schema["required"] == required
    assert {name: schema["properties"][name].get("default") for name in DEFAULTS} == DEFAULTS
    assert schema.get("additionalProperties") is not False  # spec §2: extra fields are not forbidden


def test_shared_wire_schemas(openapi):
    schemas = openapi["components"]["schemas"]
    assert openapi["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-KEY"}  # spec §1
    assert set(schemas["ProviderApiKeys"]["properties"]) == PROVIDER_KEYS
    assert schemas["ChatMessage"]["required"] == ["role"]  # spec §4: content may be absent
    assert schemas["ChatMessage"]["properties"]["role"]["enum"] == ["user", "assistant", "system", "tool"]
    assert schemas["ModelConfigChatRequest"]["required"] == ["model"]  # spec §5
    assert schemas["ChatResponse"]["required"] == ["data", "provider_responses"]  # spec §6
    assert schemas["ChatDataResponse"]["required"] == ["id", "index", "output", "raw_output", "model_config_id",
                                                       "output_message"]
    assert schemas["Usage"]["required"] == ["prompt_tokens", "generation_tokens", "total_tokens"]
    # spec §8: 422 items carry loc/msg/type only (not FastAPI's default with the request's ``input``)
    assert schemas["HTTPValidationError"]["required"] == ["detail"]
    assert set(schemas["ValidationError"]["properties"]) == {"loc", "msg", "type"}
    for path in CHAT_PATHS:
        ok = openapi["paths"][path]["post"]["responses"]["200"]["content"]
        assert ok["application/json"]["schema"] == {"$ref": SCHEMA_REF + "ChatResponse"}
        assert "text/event-stream" in ok  # spec §7
