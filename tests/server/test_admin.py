"""Management endpoints over real HTTP: model configs, projects, experiments, deployments, logs.

Why: ``/chat-model-config``, ``/chat-experiment`` and ``/chat-deployed`` are only as right as the
registration, dedup and deployment rules behind them (humanloop-v4-chat-api.md §9).
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.server.helpers import HELLO, id_pattern, mock_config, ok, patch, registered as register, unique


def create_project(server, name: str) -> dict[str, Any]:
    """POST /projects answers 201 (the only status the v4 SDK declares for it)."""
    response = server.post("/projects", {"name": name})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def active_id(server, project_id: str, environment: str | None = None) -> str:
    params = {"environment": environment} if environment else None
    return ok(server.get(f"/projects/{project_id}/active-config", params=params))["config"]["id"]


def deployed_output(server, project_id: str, environment: str | None = None) -> tuple[str, str]:
    body: dict[str, Any] = {"project_id": project_id, "messages": HELLO}
    if environment:
        body["environment"] = environment
    entry = ok(server.post("/chat-deployed", body))["data"][0]
    return entry["model_config_id"], entry["output"]


# -- model configs -------------------------------------------------------------------------------
def test_register_creates_the_project_and_deploys_its_first_config(server):
    name = unique("register")
    first = register(server, project=name, **mock_config("first"))
    project_id, config_id = first["project_id"], first["config"]["id"]
    assert id_pattern("pr").fullmatch(project_id) and id_pattern("config").fullmatch(config_id)
    assert first["project_name"] == name
    project = ok(server.get(f"/projects/{project_id}"))
    assert (project["id"], project["name"]) == (project_id, name)
    assert project["active_config"]["config"]["id"] == config_id
    assert active_id(server, project_id) == config_id

    second = register(server, project_id=project_id, **mock_config("second"))["config"]["id"]
    assert second != config_id
    assert active_id(server, project_id) == config_id  # only the first config is deployed on its own
    assert deployed_output(server, project_id) == (config_id, "first: hello there world")
    by_name = ok(server.post("/chat-deployed", {"project": name, "messages": HELLO}))
    assert (by_name["project_id"], by_name["data"][0]["model_config_id"]) == (project_id, config_id)
    configs = ok(server.get(f"/projects/{project_id}/configs"))
    assert [c["config"]["id"] for c in configs] == [config_id, second]
    assert {c["project_id"] for c in configs} == {project_id}


def test_configs_are_immutable_and_deduplicated_by_parameters(server):
    name = unique("dedup")
    config = mock_config(chat_template=[{"role": "system", "content": "Be {{tone}}"}], stop=["x"], max_tokens=9)
    original = register(server, project=name, name="original", description="kept", **config)["config"]
    again = register(server, project=name, name="renamed", description="ignored", **config)["config"]
    assert again == original  # same parameters: the same, unchanged config
    fetched = ok(server.get(f"/model-configs/{original['id']}"))
    assert fetched == original
    assert fetched["type"] == "model" and fetched["name"] == "original" and fetched["description"] == "kept"
    assert (fetched["model"], fetched["provider"], fetched["temperature"], fetched["max_tokens"],
            fetched["stop"]) == ("mock-model", "mock", 0, 9, ["x"])
    assert fetched["chat_template"][0]["content"] == "Be {{tone}}"

    changed = register(server, project=name, **{**config, "temperature": 0.3})["config"]
    assert changed["id"] != original["id"] and changed["temperature"] == 0.3
    assert ok(server.get(f"/model-configs/{original['id']}"))["temperature"] == 0

    elsewhere = register(server, project=unique("dedup-other"), **config)["config"]
    assert elsewhere["id"] != original["id"]  # configs belong to one project


def test_register_needs_a_project(server):
    response = server.post("/model-configs", mock_config())
    assert response.status_code == 422
    assert all(set(item) == {"loc", "msg", "type"} for item in response.json()["detail"])


# -- projects ------------------------------------------------------------------------------------
def test_create_get_and_list_projects(server):
    name = unique("created")
    created = create_project(server, name)
    assert id_pattern("pr").fullmatch(created["id"]) and created["name"] == name
    assert created.get("active_config") is None and created.get("active_experiment") is None
    assert ok(server.get(f"/projects/{created['id']}")) == created

    listing = ok(server.get("/projects", params={"size": 1000}))
    assert set(listing) >= {"records", "page", "size", "total"}
    assert listing["total"] == len(listing["records"])
    assert created in listing["records"]
    assert ok(server.get(f"/projects/{created['id']}/configs")) == []

    duplicate = server.post("/projects", {"name": name})
    assert duplicate.status_code == 422
    assert [item["loc"] for item in duplicate.json()["detail"]] == [["body", "name"]]


def test_project_listing_is_paginated(server):
    for _ in range(3):
        create_project(server, unique("page"))
    everything = ok(server.get("/projects", params={"size": 1000}))["records"]
    pages = [ok(server.get("/projects", params={"page": page, "size": 2})) for page in range(len(everything) // 2 + 1)]
    assert [p["id"] for page in pages for p in page["records"]] == [p["id"] for p in everything]
    assert all(len(page["records"]) <= 2 and page["total"] == len(everything) for page in pages)
    assert pages[1]["page"] == 1 and pages[1]["size"] == 2


def test_chat_with_a_project_created_by_post_projects(server):
    name = unique("then-chat")
    project_id = create_project(server, name)["id"]
    result = ok(server.post("/chat", {"project": name, "model_config": mock_config(), "messages": HELLO}))
    assert result["project_id"] == project_id
    assert active_id(server, project_id) == result["data"][0]["model_config_id"]


# -- experiments ---------------------------------------------------------------------------------
def test_create_and_list_experiments(server):
    first = register(server, project=unique("experiments"), **mock_config("a"))
    project_id, config_a = first["project_id"], first["config"]["id"]
    config_b = register(server, project_id=project_id, **mock_config("b"))["config"]["id"]
    body = {"name": "a-vs-b", "positive_labels": [{"type": "rating", "value": "good"}],
            "config_ids": [config_a, config_b]}
    created = ok(server.post(f"/projects/{project_id}/experiments", body))
    assert id_pattern("exp").fullmatch(created["id"])
    assert (created["project_id"], created["name"]) == (project_id, "a-vs-b")
    assert created["positive_labels"] == [{"type": "rating", "value": "good"}]
    assert [c["id"] for c in created["configs"]] == [config_a, config_b]
    assert ok(server.get(f"/projects/{project_id}/experiments")) == [created]
    assert active_id(server, project_id) == config_a  # creating an experiment deploys nothing


def test_experiment_with_a_config_of_another_project_is_404(server):
    project_id = register(server, project=unique("exp-a"), **mock_config())["project_id"]
    foreign = register(server, project=unique("exp-b"), **mock_config())["config"]["id"]
    response = server.post(f"/projects/{project_id}/experiments",
                           {"name": "x", "positive_labels": [], "config_ids": [foreign]})
    assert response.status_code == 404
    assert response.json() == {"detail": f"model config {foreign} not found in project {project_id}"}


# -- deployments ---------------------------------------------------------------------------------
@pytest.fixture
def two_configs(server) -> tuple[str, str, str]:
    first = register(server, project=unique("deploy"), **mock_config("one"))
    second = register(server, project_id=first["project_id"], **mock_config("two"))
    return first["project_id"], first["config"]["id"], second["config"]["id"]


def test_deploy_config_to_the_default_environment(server, two_configs):
    project_id, first, second = two_configs
    deployed = ok(patch(server, f"/projects/{project_id}/deploy-config", {"config_id": second}))
    assert len(deployed) == 1
    (production,) = deployed
    assert production["environment_name"] == "production"
    assert id_pattern("env").fullmatch(production["environment_id"])
    assert (production["model_config_id"], production.get("experiment_id")) == (second, None)
    assert active_id(server, project_id) == second
    assert active_id(server, project_id, "production") == second
    assert deployed_output(server, project_id) == (second, "two: hello there world")
    assert deployed_output(server, project_id, "production") == (second, "two: hello there world")


def test_deploy_config_per_environment(server, two_configs):
    project_id, first, second = two_configs
    environment = unique("staging")
    deployed = ok(patch(server, f"/projects/{project_id}/deploy-config",
                        {"config_id": second, "environments": [{"name": environment}]}))
    by_name = {d["environment_name"]: d for d in deployed}
    assert set(by_name) == {"production", environment}
    assert by_name[environment]["model_config_id"] == second
    assert by_name["production"]["model_config_id"] == first
    assert active_id(server, project_id) == first
    assert active_id(server, project_id, environment) == second
    assert deployed_output(server, project_id, environment) == (second, "two: hello there world")
    assert deployed_output(server, project_id) == (first, "one: hello there world")

    # the same environment by id, now with the first config
    env_id = by_name[environment]["environment_id"]
    ok(patch(server, f"/projects/{project_id}/deploy-config", {"config_id": first, "environments": [{"id": env_id}]}))
    assert active_id(server, project_id, environment) == first


def test_deploy_experiment_is_sampled_per_sample(server, two_configs):
    project_id, first, second = two_configs
    experiment_id = ok(server.post(f"/projects/{project_id}/experiments",
                                   {"name": "e", "positive_labels": [], "config_ids": [first, second]}))["id"]
    deployed = ok(patch(server, f"/projects/{project_id}/deploy-config", {"experiment_id": experiment_id}))
    assert [(d.get("model_config_id"), d["experiment_id"]) for d in deployed] == [(None, experiment_id)]
    active = ok(server.get(f"/projects/{project_id}/active-config"))
    assert active["experiment_id"] == experiment_id and active["config"]["id"] in (first, second)
    assert ok(server.get(f"/projects/{project_id}"))["active_experiment"]["id"] == experiment_id
    result = ok(server.post("/chat-deployed", {"project_id": project_id, "messages": HELLO, "num_samples": 40}))
    assert {d["model_config_id"] for d in result["data"]} == {first, second}  # P(one only) = 2**-39


def test_deploy_needs_exactly_one_of_config_and_experiment(server, two_configs):
    project_id, first, _ = two_configs
    for body in ({}, {"config_id": first, "experiment_id": "exp_000000000000000000000"}):
        response = patch(server, f"/projects/{project_id}/deploy-config", body)
        assert response.status_code == 422
        assert all(set(item) == {"loc", "msg", "type"} for item in response.json()["detail"])
    assert active_id(server, project_id) == first


def test_deploy_a_config_of_another_project_is_404(server, two_configs):
    project_id, first, _ = two_configs
    foreign = register(server, project=unique("foreign"), **mock_config())["config"]["id"]
    response = patch(server, f"/projects/{project_id}/deploy-config", {"config_id": foreign})
    assert response.status_code == 404
    assert response.json() == {"detail": f"{foreign} not found in project {project_id}"}
    assert active_id(server, project_id) == first


# -- logs ----------------------------------------------------------------------------------------
def test_logs_are_paginated_in_creation_order(server):
    name = unique("logs")
    first = ok(server.post("/chat", {"project": name, "model_config": mock_config(), "messages": HELLO,
                                     "num_samples": 3, "source": "pytest", "metadata": {"k": "v"}}))
    second = ok(server.post("/chat", {"project": name, "model_config": mock_config(), "messages": HELLO,
                                      "num_samples": 2}))
    ids = [d["id"] for d in first["data"]] + [d["id"] for d in second["data"]]
    project_id = first["project_id"]
    pages = [ok(server.get("/logs", params={"project_id": project_id, "page": page, "size": 2})) for page in range(3)]
    assert [len(p["records"]) for p in pages] == [2, 2, 1]
    assert all(p["total"] == 5 and p["size"] == 2 for p in pages) and [p["page"] for p in pages] == [0, 1, 2]
    records = [r for p in pages for r in p["records"]]
    assert [r["id"] for r in records] == ids
    assert [r["index"] for r in records] == [0, 1, 2, 0, 1]
    head = records[0]
    assert (head["project_id"], head["model_config_id"], head["endpoint"], head["source"], head["metadata"],
            head["error"], head["output"], head["finish_reason"]) == (
        project_id, first["data"][0]["model_config_id"], "chat", "pytest", {"k": "v"}, None,
        "mock-model: hello there world", "stop")
    assert head["usage"] == first["usage"]
    assert ok(server.get(f"/logs/{ids[3]}")) == records[3]
    assert ok(server.get("/logs", params={"project_id": project_id, "page": 3, "size": 2}))["records"] == []
    assert ok(server.get(f"/projects/{project_id}"))["data_count"] == 5
