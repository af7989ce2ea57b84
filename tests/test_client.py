"""HLClient against the real local server (a process on a pre-bound port): the four chat endpoints,
num_samples, streaming equal to non-streaming, typed 422/401/404 errors, management helpers, and no
key in errors or reprs."""
from __future__ import annotations

import json
import uuid
from collections import defaultdict

import pytest

from hl_notebook.call import execute
from hl_notebook.client import HLClient, RetryPolicy
from hl_notebook.connection import Connection
from hl_notebook.errors import HLAuthError, HLNotFoundError, HLValidationError
from hl_notebook.secrets import Secret
from hl_notebook.spec import ChatSpec, build_body

MESSAGES = ({"role": "user", "content": "hello there"},)
NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture(scope="module")
def client(server) -> HLClient:
    return HLClient(server.base_url, Secret(server.api_key), retry=NO_RETRY)


@pytest.fixture(scope="module")
def setup(client):
    """A fresh project with configs A (model m-a) and B (m-b), an experiment of both, B deployed to
    production and A to staging."""
    name = f"client-{uuid.uuid4().hex[:8]}"
    a = client.register_config(name, model="m-a", provider="mock", temperature=0)
    b = client.register_config(name, model="m-b", provider="mock", temperature=0)
    project_id = a["project_id"]
    experiment = client.create_experiment(project_id, "a-vs-b", [a["config"]["id"], b["config"]["id"]])
    production = client.deploy(project_id, config_id=b["config"]["id"])
    staging = client.deploy(project_id, config_id=a["config"]["id"], environments=["staging"])
    return {"name": name, "project_id": project_id, "a": a["config"]["id"], "b": b["config"]["id"],
            "experiment_id": experiment["id"], "experiment": experiment, "production": production,
            "staging": staging}


def specs(setup) -> dict[str, ChatSpec]:
    """One spec per endpoint; each resolves to a known config (the experiment one to A or B)."""
    return {
        "chat": ChatSpec("chat", MESSAGES, model_config={"model": "m-inline", "provider": "mock", "temperature": 0},
                         project=setup["name"]),
        "model-config": ChatSpec("model-config", MESSAGES, model_config_id=setup["a"]),
        "experiment": ChatSpec("experiment", MESSAGES, experiment_id=setup["experiment_id"]),
        "deployed": ChatSpec("deployed", MESSAGES, project_id=setup["project_id"]),
    }


# -- the four endpoints ---------------------------------------------------------------------------
def test_chat_with_an_inline_config(client, setup):
    response = client.chat("/chat", build_body(specs(setup)["chat"]))
    assert response["project_id"] == setup["project_id"]
    [sample] = response["data"]
    assert (sample["index"], sample["output"], sample["finish_reason"]) == (0, "m-inline: hello there", "stop")
    assert sample["model_config_id"].startswith("config_")
    assert sample["model_config_id"] not in (setup["a"], setup["b"])
    assert sample["id"].startswith("data_")
    assert response["usage"] == {"prompt_tokens": 2, "generation_tokens": 3, "total_tokens": 5}


def test_chat_model_config_uses_the_registered_config(client, setup):
    response = client.chat("/chat-model-config", build_body(specs(setup)["model-config"]))
    assert [(s["output"], s["model_config_id"]) for s in response["data"]] == [("m-a: hello there", setup["a"])]


def test_chat_experiment_samples_one_of_its_configs(client, setup):
    assert {c["id"] for c in setup["experiment"]["configs"]} == {setup["a"], setup["b"]}
    response = client.chat("/chat-experiment", build_body(specs(setup)["experiment"]))
    [sample] = response["data"]
    expected = {setup["a"]: "m-a: hello there", setup["b"]: "m-b: hello there"}
    assert sample["model_config_id"] in expected
    assert sample["output"] == expected[sample["model_config_id"]]


def test_chat_deployed_follows_the_environment(client, setup):
    assert [(d["environment_name"], d["model_config_id"]) for d in setup["production"]] == [
        ("production", setup["b"])]
    assert {d["environment_name"]: d["model_config_id"] for d in setup["staging"]} == {
        "production": setup["b"], "staging": setup["a"]}
    production = client.chat("/chat-deployed", build_body(specs(setup)["deployed"]))
    assert [(s["output"], s["model_config_id"]) for s in production["data"]] == [("m-b: hello there", setup["b"])]
    staging_spec = ChatSpec("deployed", MESSAGES, project_id=setup["project_id"], environment="staging")
    staging = client.chat("/chat-deployed", build_body(staging_spec))
    assert [(s["output"], s["model_config_id"]) for s in staging["data"]] == [("m-a: hello there", setup["a"])]


def test_num_samples_returns_one_entry_per_sample(client, setup):
    spec = ChatSpec("chat", MESSAGES, model_config={"model": "m", "provider": "mock", "temperature": 0.8},
                    project=setup["name"], num_samples=3)
    data = client.chat("/chat", build_body(spec))["data"]
    assert [s["index"] for s in data] == [0, 1, 2]
    assert all(s["output"].startswith("m: hello there ~ ") for s in data)
    assert len({s["output"] for s in data}) == 3  # mock: samples differ above temperature 0
    assert len({s["id"] for s in data}) == 3


# -- streaming ------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["chat", "model-config", "deployed"])
def test_stream_equals_the_non_streamed_response(client, setup, endpoint):
    spec = ChatSpec(**{**specs(setup)[endpoint].__dict__, "num_samples": 2})
    plain = execute(Connection(client, embedded=False), spec)
    deltas: dict[int, list[str]] = defaultdict(list)
    streamed = execute(Connection(client, embedded=False), ChatSpec(**{**spec.__dict__, "stream": True}),
                       on_delta=lambda call, index, delta: deltas[index].append(delta))
    assert plain.ok and streamed.ok, (plain.error, streamed.error)

    def samples(result):
        return [(s["index"], s["output"], s["finish_reason"], s["model_config_id"]) for s in result.response["data"]]

    assert samples(streamed) == samples(plain)
    assert len(samples(plain)) == 2
    for sample in streamed.response["data"]:
        assert "".join(deltas[sample["index"]]) == sample["raw_output"]
        assert len(deltas[sample["index"]]) == 3  # the mock streams word by word: "m:", " hello", " there"
        assert sample["output_message"]["content"] == sample["output"]
    assert streamed.response["usage"] == plain.response["usage"]


# -- errors ---------------------------------------------------------------------------------------
def test_422_is_a_one_line_validation_error(client):
    with pytest.raises(HLValidationError) as info:
        client.chat("/chat", {"messages": list(MESSAGES)})
    error = info.value
    assert str(error) == "POST /chat returned 422: body.model_config: Field required"
    assert (error.status_code, error.endpoint) == (422, "/chat")
    assert error.body == {"detail": [{"loc": ["body", "model_config"], "msg": "Field required", "type": "missing"}]}


def test_422_with_several_problems_names_the_first_and_counts_the_rest(client):
    with pytest.raises(HLValidationError) as info:
        client.chat("/chat", {})
    assert str(info.value) == "POST /chat returned 422: body.messages: Field required (+1 more)"
    assert len(info.value.body["detail"]) == 2


def test_422_does_not_echo_provider_keys(client):
    canary = f"canary-openai-{uuid.uuid4().hex}"
    with pytest.raises(HLValidationError) as info:
        client.chat("/chat", {"messages": "not a list", "provider_api_keys": {"openai": canary}})
    assert info.value.status_code == 422
    for text in (str(info.value), repr(info.value), json.dumps(info.value.body)):
        assert canary not in text


def test_401_for_a_wrong_key_never_shows_the_key(server):
    canary = f"hl-canary-{uuid.uuid4().hex}"
    client = HLClient(server.base_url, Secret(canary), retry=NO_RETRY)
    with pytest.raises(HLAuthError) as info:
        client.chat("/chat", build_body(ChatSpec("chat", MESSAGES, model_config={"model": "m", "provider": "mock"})))
    error = info.value
    assert str(error) == "POST /chat returned 401: invalid or missing X-API-KEY"
    assert error.status_code == 401
    for text in (str(error), repr(error), repr(client), str(client), json.dumps(error.body), repr(error.args)):
        assert canary not in text


def test_401_on_a_management_call(server):
    with pytest.raises(HLAuthError) as info:
        HLClient(server.base_url, Secret("wrong-key-000"), retry=NO_RETRY).projects()
    assert str(info.value) == "GET /projects returned 401: invalid or missing X-API-KEY"


def test_404_for_an_unknown_config_experiment_or_project(client):
    with pytest.raises(HLNotFoundError) as info:
        client.chat("/chat-model-config", build_body(ChatSpec("model-config", MESSAGES,
                                                              model_config_id="config_doesnotexist0000000")))
    assert str(info.value) == "POST /chat-model-config returned 404: model config config_doesnotexist0000000 not found"
    assert info.value.status_code == 404
    with pytest.raises(HLNotFoundError) as info:
        client.chat("/chat-experiment", build_body(ChatSpec("experiment", MESSAGES, experiment_id="exp_nope")))
    assert str(info.value).startswith("POST /chat-experiment returned 404: ")
    with pytest.raises(HLNotFoundError) as info:
        client.project_configs("pr_doesnotexist")
    assert str(info.value).startswith("GET /projects/pr_doesnotexist/configs returned 404: ")


def test_404_when_nothing_is_deployed_in_the_environment(client, setup):
    spec = ChatSpec("deployed", MESSAGES, project_id=setup["project_id"], environment="nowhere")
    with pytest.raises(HLNotFoundError) as info:
        client.chat("/chat-deployed", build_body(spec))
    assert "nowhere" in str(info.value)


# -- management helpers ---------------------------------------------------------------------------
def test_projects_configs_and_experiments(client, setup):
    [project] = [p for p in client.projects() if p["name"] == setup["name"]]
    assert project["id"] == setup["project_id"]
    assert project["active_config"]["config"]["id"] == setup["b"]  # what production runs
    configs = client.project_configs(setup["project_id"])
    assert {c["config"]["model"]: c["config"]["id"] for c in configs if c["config"]["model"] in ("m-a", "m-b")} == {
        "m-a": setup["a"], "m-b": setup["b"]}
    [experiment] = client.project_experiments(setup["project_id"])
    assert (experiment["id"], experiment["name"]) == (setup["experiment_id"], "a-vs-b")


def test_register_config_is_deduplicated_by_parameters(client, setup):
    again = client.register_config(setup["name"], model="m-a", provider="mock", temperature=0)
    assert again["config"]["id"] == setup["a"]


def test_logs_hold_one_record_per_sample(client):
    name = f"client-logs-{uuid.uuid4().hex[:8]}"
    spec = ChatSpec("chat", MESSAGES, model_config={"model": "m", "provider": "mock", "temperature": 0},
                    project=name, num_samples=2, metadata={"case": "logs"})
    response = client.chat("/chat", build_body(spec))
    logs = client.logs(response["project_id"])
    assert logs["total"] == 2
    assert sorted(r["id"] for r in logs["records"]) == sorted(s["id"] for s in response["data"])
    assert {(r["index"], r["output"], r["metadata"]["case"]) for r in logs["records"]} == {
        (0, "m: hello there", "logs"), (1, "m: hello there", "logs")}
    assert client.logs(response["project_id"], page=1, size=1)["records"][0]["id"] in {s["id"] for s in response["data"]}
