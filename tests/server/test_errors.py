"""Error bodies over real HTTP: 401, 404, 422 (never echoing input), provider failures (spec §8).

Why: the client turns these bodies into one-line messages, and a body that echoes the request can
leak ``provider_api_keys`` into a saved notebook; the decisions table fixes most bodies exactly.
"""
from __future__ import annotations

import pytest
import requests

from tests.server.helpers import (CHAT_PATHS, FAKE_PROVIDER_KEY, HELLO, json_error as assert_json_error, mock_config,
                                  send, unique)
from support import closed_port_url

CANARY = "sk-CANARY-5b1e0c"
UNAUTHORIZED = {"detail": "invalid or missing X-API-KEY"}


@pytest.fixture(scope="module")
def known(server) -> dict[str, str]:
    response = server.post("/model-configs", {"project": unique("errors"), **mock_config()})
    assert response.status_code == 200, response.text
    return {"project_id": response.json()["project_id"], "config_id": response.json()["config"]["id"]}


# -- 401 -------------------------------------------------------------------------------------------
ROUTES = [("POST", path) for path in CHAT_PATHS] + [
    ("POST", "/model-configs"), ("GET", "/model-configs/config_x"), ("GET", "/projects"), ("POST", "/projects"),
    ("GET", "/projects/pr_x"), ("GET", "/projects/pr_x/configs"), ("GET", "/projects/pr_x/experiments"),
    ("POST", "/projects/pr_x/experiments"), ("PATCH", "/projects/pr_x/deploy-config"),
    ("GET", "/projects/pr_x/active-config"), ("GET", "/logs?project_id=pr_x"),
]


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong-key"}, {"X-API-KEY": ""}],
                         ids=["missing", "wrong", "empty"])
def test_missing_or_wrong_api_key_is_401(server, method, path, headers):
    body = {"messages": HELLO, "provider_api_keys": {"openai": CANARY}} if method != "GET" else None
    response = send(server, method, path, body, headers=headers)
    assert assert_json_error(response, 401) == UNAUTHORIZED
    assert CANARY not in response.text


def test_a_bearer_token_is_not_an_api_key(server):
    response = send(server, "GET", "/projects", headers={"Authorization": f"Bearer {server.api_key}"})
    assert assert_json_error(response, 401) == UNAUTHORIZED


def test_401_comes_before_validation(server):
    response = send(server, "POST", "/chat", {"messages": "nope", "provider_api_keys": {"openai": CANARY}},
                    headers={"X-API-KEY": "wrong"})
    assert assert_json_error(response, 401) == UNAUTHORIZED


# -- 422 -------------------------------------------------------------------------------------------
KEYS = {"provider_api_keys": {"openai": CANARY, "anthropic": CANARY}}
INVALID_BODIES = {
    "missing messages": ({**KEYS, "model_config": mock_config()}, [["body", "messages"]]),
    "missing model_config": ({**KEYS, "messages": HELLO}, [["body", "model_config"]]),
    "bad role": ({**KEYS, "model_config": mock_config(), "messages": [{"role": CANARY, "content": CANARY}]},
                 [["body", "messages", 0, "role"]]),
    "bad temperature": ({**KEYS, "model_config": mock_config(temperature=CANARY), "messages": HELLO},
                        [["body", "model_config", "temperature"]]),
    "bad provider": ({**KEYS, "model_config": mock_config(provider=CANARY), "messages": HELLO},
                     [["body", "model_config", "provider"]]),
    "bad num_samples": ({**KEYS, "model_config": mock_config(), "messages": HELLO, "num_samples": 0},
                        [["body", "num_samples"]]),
    "key of the wrong type": ({"provider_api_keys": {"openai": [CANARY]}, "model_config": mock_config(),
                               "messages": HELLO}, [["body", "provider_api_keys", "openai"]]),
    "bad tool_choice": ({**KEYS, "model_config": mock_config(), "messages": HELLO, "tool_choice": CANARY}, None),
    "bad response_format": ({**KEYS, "model_config": mock_config(), "messages": HELLO,
                             "response_format": {"type": CANARY}}, [["body", "response_format", "type"]]),
    "body not an object": (CANARY, [["body"]]),
}


@pytest.mark.parametrize("case", INVALID_BODIES)
def test_422_items_carry_only_loc_msg_type_and_never_echo_input(server, case):
    body, locs = INVALID_BODIES[case]
    response = send(server, "POST", "/chat", body)
    items = assert_json_error(response, 422)["detail"]
    assert items and all(set(item) == {"loc", "msg", "type"} for item in items)
    assert all(isinstance(item["msg"], str) and isinstance(item["type"], str) for item in items)
    if locs is not None:
        assert [item["loc"] for item in items] == locs
    assert CANARY not in response.text


def test_malformed_json_is_422_without_echo(server):
    raw = b'{"messages": [], "provider_api_keys": {"openai": "' + CANARY.encode() + b'"'
    response = requests.post(server.base_url + "/chat", data=raw, timeout=60,
                             headers={**server.headers, "Content-Type": "application/json"})
    items = assert_json_error(response, 422)["detail"]
    assert all(set(item) == {"loc", "msg", "type"} for item in items)
    assert items[0]["loc"][0] == "body"
    assert CANARY not in response.text


@pytest.mark.parametrize("path,required", [("/chat-deployed", None), ("/chat-experiment", "experiment_id"),
                                            ("/chat-model-config", "model_config_id")])
def test_endpoint_specific_required_fields(server, path, required):
    response = send(server, "POST", path, {"messages": HELLO, **KEYS})
    items = assert_json_error(response, 422)["detail"]
    # /chat-deployed validates, but needs a project to find a deployment in
    assert [item["loc"] for item in items] == [["body", required or "project_id"]]
    assert CANARY not in response.text


def test_missing_template_variable_is_a_validation_item_per_name(server):
    config = mock_config(chat_template=[{"role": "system", "content": "{{ a }} and {{b}}"}])
    response = send(server, "POST", "/chat", {"model_config": config, "messages": HELLO, **KEYS})
    items = assert_json_error(response, 422)["detail"]
    assert [item["loc"] for item in items] == [["body", "inputs", "a"], ["body", "inputs", "b"]]
    assert all(set(item) == {"loc", "msg", "type"} for item in items)
    assert CANARY not in response.text


# -- 404 -------------------------------------------------------------------------------------------
MISSING_PROJECT = "pr_000000000000000000000"
MISSING_CONFIG = "config_000000000000000000000"
MISSING_EXPERIMENT = "exp_000000000000000000000"
NOT_FOUND = [
    ("GET", f"/projects/{MISSING_PROJECT}", None, f"project {MISSING_PROJECT} not found"),
    ("GET", f"/projects/{MISSING_PROJECT}/configs", None, f"project {MISSING_PROJECT} not found"),
    ("GET", f"/projects/{MISSING_PROJECT}/experiments", None, f"project {MISSING_PROJECT} not found"),
    ("GET", f"/projects/{MISSING_PROJECT}/active-config", None, f"project {MISSING_PROJECT} not found"),
    ("GET", f"/logs?project_id={MISSING_PROJECT}", None, f"project {MISSING_PROJECT} not found"),
    ("GET", f"/model-configs/{MISSING_CONFIG}", None, f"model config {MISSING_CONFIG} not found"),
    ("POST", "/model-configs", {"project_id": MISSING_PROJECT, **mock_config()}, f"project {MISSING_PROJECT} not found"),
    ("POST", f"/projects/{MISSING_PROJECT}/experiments", {"name": "x", "positive_labels": []},
     f"project {MISSING_PROJECT} not found"),
    ("PATCH", f"/projects/{MISSING_PROJECT}/deploy-config", {"config_id": MISSING_CONFIG},
     f"project {MISSING_PROJECT} not found"),
    ("POST", "/chat", {"project_id": MISSING_PROJECT, "model_config": mock_config(), "messages": HELLO, **KEYS},
     f"project {MISSING_PROJECT} not found"),
    ("POST", "/chat-deployed", {"project_id": MISSING_PROJECT, "messages": HELLO, **KEYS},
     f"project {MISSING_PROJECT} not found"),
    ("POST", "/chat-deployed", {"project": "no-such-project-9f2c", "messages": HELLO, **KEYS},
     "project no-such-project-9f2c not found"),
    ("POST", "/chat-model-config", {"model_config_id": MISSING_CONFIG, "messages": HELLO, **KEYS},
     f"model config {MISSING_CONFIG} not found"),
    ("POST", "/chat-experiment", {"experiment_id": MISSING_EXPERIMENT, "messages": HELLO, **KEYS},
     f"experiment {MISSING_EXPERIMENT} not found"),
]


@pytest.mark.parametrize("method,path,body,detail", NOT_FOUND, ids=[f"{m} {p}" for m, p, _, _ in NOT_FOUND])
def test_unknown_ids_are_404_naming_them(server, method, path, body, detail):
    response = send(server, method, path, body)
    assert assert_json_error(response, 404) == {"detail": detail}
    assert CANARY not in response.text


def test_deploying_unknown_config_or_experiment_is_404(server, known):
    project_id = known["project_id"]
    for body, detail in (({"config_id": MISSING_CONFIG}, f"model config {MISSING_CONFIG} not found"),
                         ({"experiment_id": MISSING_EXPERIMENT}, f"experiment {MISSING_EXPERIMENT} not found")):
        response = send(server, "PATCH", f"/projects/{project_id}/deploy-config", body)
        assert assert_json_error(response, 404) == {"detail": detail}


def test_nothing_deployed_is_404_naming_project_and_environment(server):
    created = server.post("/projects", {"name": unique("undeployed")})
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    response = send(server, "POST", "/chat-deployed", {"project_id": project_id, "messages": HELLO})
    expected = {"detail": f"project {project_id} has no deployment in environment production"}
    assert assert_json_error(response, 404) == expected
    response = send(server, "GET", f"/projects/{project_id}/active-config")
    assert assert_json_error(response, 404) == expected


def test_unknown_route_and_wrong_method_are_json(server):
    assert assert_json_error(send(server, "GET", "/no-such-route"), 404) == {"detail": "Not Found"}
    assert assert_json_error(send(server, "GET", "/chat"), 405) == {"detail": "Method Not Allowed"}


# -- provider failures (decisions table: §8 object; the failed call is logged) -----------------------
@pytest.mark.parametrize("stream", [False, True])
def test_unreachable_provider_is_502_and_logged_with_its_error_and_no_key(server, stream):
    """502 ``upstream_unreachable``, not 503: the client retries 503s (issue 16.4, docs/v4-decisions.md)."""
    project = unique("unreachable")
    config = {"model": "gpt-test", "provider": "openai", "other": {"base_url": closed_port_url() + "/v1"}}
    body = {"project": project, "model_config": config, "messages": HELLO, "num_samples": 2, "stream": stream,
            "provider_api_keys": {"openai": CANARY}, "inputs": {"kept": "yes"}}
    response = send(server, "POST", "/chat", body)
    detail = assert_json_error(response, 502)["detail"]
    assert set(detail) == {"type", "message", "code", "origin"}
    assert detail["code"] == 502 and detail["origin"] == "OpenAI"
    assert detail["type"] == "upstream_unreachable" and detail["message"]
    assert "Retry-After" not in response.headers
    assert CANARY not in response.text

    projects = {p["name"]: p["id"] for p in server.get("/projects", params={"size": 1000}).json()["records"]}
    logs = server.get("/logs", params={"project_id": projects[project]})
    assert logs.status_code == 200
    records = logs.json()["records"]
    assert [r["index"] for r in records] == [0, 1]
    assert all(r["error"] == detail and r["output"] is None and r["inputs"] == {"kept": "yes"} for r in records)
    assert CANARY not in logs.text
    config_id = records[0]["model_config_id"]
    assert CANARY not in server.get(f"/model-configs/{config_id}").text


def test_unsupported_provider_is_a_provider_error_object(server):
    response = send(server, "POST", "/chat", {"project": unique("cohere"), "messages": HELLO,
                                              "model_config": {"model": "command", "provider": "cohere"}})
    detail = assert_json_error(response, 422)["detail"]
    assert set(detail) == {"type", "message", "code", "origin"} and detail["code"] == 422


@pytest.mark.parametrize("model,status", [("gpt-fake", 401), ("fail-429", 429), ("fail-500", 502)])
def test_provider_errors_map_to_the_spec_object_and_never_show_the_key(server, fake_openai, model, status):
    key = CANARY if status == 401 else FAKE_PROVIDER_KEY
    config = {"model": model, "provider": "openai", "other": {"base_url": fake_openai}}
    body = {"project": unique("provider-error"), "model_config": config, "messages": HELLO,
            "provider_api_keys": {"openai": key}}
    response = send(server, "POST", "/chat", body)
    detail = assert_json_error(response, status)["detail"]
    assert set(detail) == {"type", "message", "code", "origin"}
    assert (detail["code"], detail["origin"]) == (status, "OpenAI")
    assert CANARY not in response.text
    if status == 429:
        assert response.headers["Retry-After"] == "2"
    projects = {p["name"]: p["id"] for p in server.get("/projects", params={"size": 1000}).json()["records"]}
    logs = server.get("/logs", params={"project_id": projects[body["project"]]})
    assert [r["error"] for r in logs.json()["records"]] == [detail]
    assert CANARY not in logs.text
