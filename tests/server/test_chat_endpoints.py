"""The four chat endpoints over real HTTP: fields accepted, response shape, samples, templates,
config registration, experiments, sessions, ``save``/``return_inputs`` and the mock's contract.

Why: these are the wire promises of humanloop-v4-chat-api.md §2–§6 and §9–§10 that the SDKs and
our client rely on; they are checked against the real server process (the session ``server``).
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.server.helpers import (CHAT_PATHS as ENDPOINTS, HELLO, chat, experiment, id_pattern, logs, mock_config,
                                  patch, register, registered, unique)


def assert_chat_response(body: dict[str, Any], num_samples: int) -> None:
    """Every field of spec §6 present with its type (required ones never null)."""
    assert isinstance(body["data"], list) and len(body["data"]) == num_samples
    assert isinstance(body["provider_responses"], list)
    assert id_pattern("pr").fullmatch(body["project_id"])
    assert body["num_samples"] == num_samples
    assert body["logprobs"] is None and body["suffix"] is None
    assert set(body["usage"]) == {"prompt_tokens", "generation_tokens", "total_tokens"}
    assert all(isinstance(v, int) for v in body["usage"].values())
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["generation_tokens"]
    assert isinstance(body["provider_request"], dict)
    for key in ("user", "metadata", "session_id", "tool_choice"):
        assert key in body
    for index, entry in enumerate(body["data"]):
        assert id_pattern("data").fullmatch(entry["id"])
        assert entry["index"] == index
        assert isinstance(entry["output"], str) and isinstance(entry["raw_output"], str)
        assert entry["output"] == entry["raw_output"].strip()
        assert id_pattern("config").fullmatch(entry["model_config_id"])
        assert entry["output_message"]["role"] == "assistant"
        assert entry["output_message"]["content"] == entry["raw_output"]
        assert isinstance(entry["inputs"], dict)
        assert entry["finish_reason"] in ("stop", "length", "tool_call")
        assert entry["tool_results"] == []
        assert "tool_calls" in entry and "tool_call" in entry
    assert_messages_once_per_config(body["data"])


def assert_messages_once_per_config(data: list[dict[str, Any]]) -> None:
    """``data[i].messages`` (optional in spec §6) comes with the first sample of each config only."""
    first: dict[str, int] = {}
    for entry in data:
        first.setdefault(entry["model_config_id"], entry["index"])
        if first[entry["model_config_id"]] == entry["index"]:
            assert isinstance(entry["messages"], list) and entry["messages"], entry
        else:
            assert "messages" not in entry, entry


# -- every request field (spec §2–§5) ------------------------------------------------------------
FULL_CONFIG = {
    "model": "full-model", "name": "full", "description": "every field of spec §5", "provider": "mock",
    "max_tokens": 50, "temperature": 0, "top_p": 0.9, "stop": ["\n\n"], "presence_penalty": 0.1,
    "frequency_penalty": 0.2, "other": {"extra": 1}, "seed": 5, "response_format": {"type": "json_object"},
    "endpoint": "chat", "chat_template": [{"role": "system", "content": "Topic: {{topic}}"}],
    "tools": [{"name": "lookup", "description": "Look a thing up", "source": "inline", "source_code": "",
               "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "other": {},
               "preset_name": None},
              {"id": "oc_0123456789abcdefghijk", "source": "organization", "name": "linked"}],
    "a_field_v4_never_had": True,
}


def every_field(reference: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Be brief.", "name": "house-style"},
            {"role": "user", "content": [
                {"type": "text", "text": "look at this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"}}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "lookup", "arguments": "{\"q\": \"x\"}"}}],
             "tool_call": {"name": "lookup", "arguments": "{}"}},
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
            {"role": "user", "content": "tell me about {{topic}}"},
        ],
        "session_reference_id": reference, "parent_reference_id": "some-parent",
        "inputs": {"topic": "tea", "count": 3}, "source": "pytest", "metadata": {"run": 1},
        "save": True, "source_datapoint_id": "dp_123",
        "provider_api_keys": {slot: "unused" for slot in ("openai", "ai21", "mock", "anthropic", "cohere",
                                                          "openai_azure", "openai_azure_endpoint")},
        "num_samples": 2, "stream": False, "user": "user-7", "seed": 11, "return_inputs": True,
        "tool_choice": {"type": "function", "function": {"name": "lookup"}}, "tool_call": {"name": "lookup"},
        "response_format": {"type": "json_object"},
        "an_unknown_field": {"nested": [1, 2]},
    }


@pytest.fixture(scope="module")
def full_project(server) -> dict[str, str]:
    """A project whose first (so deployed) config is FULL_CONFIG, and an experiment holding it."""
    name = unique("every-field")
    response = server.post("/model-configs", {"project": name, **FULL_CONFIG})
    assert response.status_code == 200, response.text
    registered = response.json()
    project_id, config_id = registered["project_id"], registered["config"]["id"]
    return {"name": name, "project_id": project_id, "config_id": config_id,
            "experiment_id": experiment(server, project_id, [config_id])}


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_request_field_is_accepted_and_unknown_fields_ignored(server, full_project, path):
    body = every_field(unique("session"))
    extra = {"/chat": {"project": full_project["name"], "model_config": FULL_CONFIG},
             "/chat-deployed": {"project_id": full_project["project_id"], "environment": "production"},
             "/chat-experiment": {"experiment_id": full_project["experiment_id"]},
             "/chat-model-config": {"model_config_id": full_project["config_id"]}}[path]
    result = chat(server, {**body, **extra}, path)

    assert_chat_response(result, 2)
    assert result["project_id"] == full_project["project_id"]
    assert [d["model_config_id"] for d in result["data"]] == [full_project["config_id"]] * 2
    assert [d["output"] for d in result["data"]] == ["full-model: tell me about tea"] * 2
    assert result["data"][0]["messages"][0]["content"] == "Topic: tea"
    assert result["data"][0]["inputs"] == {"topic": "tea", "count": 3}
    assert result["user"] == "user-7"
    assert result["metadata"] == {"run": 1}
    assert result["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert id_pattern("sesh").fullmatch(result["session_id"])


def test_response_has_every_required_field_with_its_type(server):
    result = chat(server, {"project": unique("shape"), "model_config": mock_config(), "messages": HELLO})
    assert_chat_response(result, 1)
    entry = result["data"][0]
    assert entry["output"] == "mock-model: hello there world"
    assert entry["finish_reason"] == "stop"
    assert entry["messages"] == [{"role": "user", "content": "hello there world", "name": None,
                                  "tool_call_id": None, "tool_calls": None, "tool_call": None}]
    assert entry["output_message"] == {"role": "assistant", "content": "mock-model: hello there world",
                                       "name": None, "tool_call_id": None, "tool_calls": None, "tool_call": None}
    assert result["session_id"] is None and result["user"] is None and result["tool_choice"] is None


def test_num_samples_gives_that_many_entries_each_its_own_log(server):
    result = chat(server, {"project": unique("samples"), "model_config": mock_config(), "messages": HELLO,
                           "num_samples": 3})
    assert_chat_response(result, 3)
    ids = [d["id"] for d in result["data"]]
    assert len(set(ids)) == 3
    stored = logs(server, result["project_id"])
    assert [(log["id"], log["index"]) for log in stored] == [(ids[i], i) for i in range(3)]
    assert {log["output"] for log in stored} == {"mock-model: hello there world"}


def test_message_with_role_and_no_content_is_valid(server):
    result = chat(server, {"project": unique("no-content"), "model_config": mock_config(),
                           "messages": [{"role": "system"}, {"role": "user"}]})
    entry = result["data"][0]
    assert [(m["role"], m["content"]) for m in entry["messages"]] == [("system", None), ("user", None)]
    assert entry["output"] == "mock-model:"


def test_chat_without_project_is_logged_under_default(server):
    result = chat(server, {"model_config": mock_config(), "messages": HELLO})
    projects = server.get("/projects", params={"size": 1000}).json()["records"]
    assert {p["name"]: p["id"] for p in projects}["default"] == result["project_id"]
    assert result["data"][0]["id"] in {log["id"] for log in logs(server, result["project_id"])}


# -- templates (spec §5.1) ------------------------------------------------------------------------
def test_chat_template_is_rendered_from_inputs(server):
    config = mock_config(chat_template=[
        {"role": "system", "content": "You are {{tone}} about {{ topic }} ({{n}} lines)."},
        {"role": "user", "content": [{"type": "text", "text": "Say {{topic}}"},
                                     {"type": "image_url", "image_url": {"url": "http://x/{{topic}}.png"}}]}])
    result = chat(server, {"project": unique("template"), "model_config": config, "messages": HELLO,
                           "inputs": {"tone": "calm", "topic": "tea", "n": 3}})
    messages = result["data"][0]["messages"]
    assert messages[0]["content"] == "You are calm about tea (3 lines)."
    assert messages[1]["content"] == [{"type": "text", "text": "Say tea"},
                                      {"type": "image_url", "image_url": {"url": "http://x/{{topic}}.png"}}]
    assert messages[2]["content"] == "hello there world"
    assert result["data"][0]["inputs"] == {"tone": "calm", "topic": "tea", "n": 3}


def test_missing_template_variable_is_422_naming_each_and_stores_nothing(server):
    project = unique("missing-var")
    config = mock_config(chat_template=[{"role": "system", "content": "{{tone}} {{topic}} {{given}}"}])
    response = server.post("/chat", {"project": project, "model_config": config, "messages": HELLO,
                                     "inputs": {"given": "x"}})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    items = response.json()["detail"]
    assert [item["loc"] for item in items] == [["body", "inputs", "tone"], ["body", "inputs", "topic"]]
    assert all(set(item) == {"loc", "msg", "type"} for item in items)
    projects = server.get("/projects", params={"size": 1000}).json()["records"]
    assert project not in {p["name"] for p in projects}


def test_registered_template_is_rendered_on_chat_model_config(server):
    config_id = register(server, unique("registered-template"),
                         **mock_config("pinned", chat_template=[{"role": "system", "content": "Hi {{who}}"}]))
    result = chat(server, {"model_config_id": config_id, "messages": HELLO, "inputs": {"who": "Ann"}},
                  "/chat-model-config")
    assert result["data"][0]["model_config_id"] == config_id
    assert result["data"][0]["messages"][0]["content"] == "Hi Ann"
    assert result["data"][0]["output"] == "pinned: hello there world"
    missing = server.post("/chat-model-config", {"model_config_id": config_id, "messages": HELLO})
    assert missing.status_code == 422
    assert [item["loc"] for item in missing.json()["detail"]] == [["body", "inputs", "who"]]


# -- config registration and selection (spec §3, §9) ----------------------------------------------
def test_inline_config_is_registered_as_post_model_configs_would(server):
    project = unique("inline")
    first = chat(server, {"project": project, "model_config": mock_config(), "messages": HELLO})
    config_id, project_id = first["data"][0]["model_config_id"], first["project_id"]

    # same parameters, defaults spelled out: the same config (deduplicated by parameters)
    spelled = {**mock_config(), "max_tokens": -1, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0,
               "endpoint": "chat", "other": {}, "name": "another name"}
    assert register(server, project, **spelled) == config_id
    active = server.get(f"/projects/{project_id}/active-config").json()
    assert active["config"]["id"] == config_id  # the project's first config is deployed

    second = chat(server, {"project": project, "model_config": mock_config(temperature=0.5), "messages": HELLO})
    other_id = second["data"][0]["model_config_id"]
    assert id_pattern("config").fullmatch(other_id) and other_id != config_id
    assert server.get(f"/projects/{project_id}/active-config").json()["config"]["id"] == config_id
    configs = server.get(f"/projects/{project_id}/configs").json()
    assert [c["config"]["id"] for c in configs] == [config_id, other_id]
    assert server.get(f"/model-configs/{other_id}").json()["temperature"] == 0.5


def test_config_registered_first_is_reused_by_chat(server):
    project = unique("register-first")
    config_id = register(server, project, **mock_config("reg-model"))
    result = chat(server, {"project": project, "model_config": mock_config("reg-model"), "messages": HELLO})
    assert result["data"][0]["model_config_id"] == config_id


def test_chat_model_config_uses_exactly_that_config(server):
    project = unique("pinned")
    register(server, project, **mock_config("first-model"))
    config_id = register(server, project, **mock_config("second-model"))
    result = chat(server, {"model_config_id": config_id, "messages": HELLO, "num_samples": 2},
                  "/chat-model-config")
    assert [d["model_config_id"] for d in result["data"]] == [config_id] * 2
    assert [d["output"] for d in result["data"]] == ["second-model: hello there world"] * 2


@pytest.fixture(scope="module")
def two_config_experiment(server) -> dict[str, Any]:
    project = unique("experiment")
    first = registered(server, project=project, **mock_config("model-a", chat_template=[{"role": "system", "content": "I am a"}]))
    project_id, config_a = first["project_id"], first["config"]["id"]
    config_b = register(server, project, **mock_config("model-b", chat_template=[{"role": "system", "content": "I am b"}]))
    return {"project_id": project_id, "experiment_id": experiment(server, project_id, [config_a, config_b]),
            "models": {config_a: "model-a", config_b: "model-b"}}


def assert_sampled_from_both(result: dict[str, Any], models: dict[str, str]) -> None:
    used = [d["model_config_id"] for d in result["data"]]
    assert set(used) == set(models)  # 2 configs, 40 samples: all-one-config has probability 2**-39
    assert_messages_once_per_config(result["data"])
    for entry in result["data"]:
        model = models[entry["model_config_id"]]
        assert entry["output"] == f"{model}: hello there world"
        if "messages" in entry:  # each config renders its own template
            assert entry["messages"][0]["content"] == f"I am {model[-1]}"
    assert len({d["id"] for d in result["data"]}) == 40


def test_chat_experiment_samples_a_config_per_sample(server, two_config_experiment):
    result = chat(server, {"experiment_id": two_config_experiment["experiment_id"], "messages": HELLO,
                           "num_samples": 40}, "/chat-experiment")
    assert result["project_id"] == two_config_experiment["project_id"]
    assert_sampled_from_both(result, two_config_experiment["models"])
    stored = {log["id"]: log for log in logs(server, result["project_id"])}
    sent = {entry["model_config_id"]: entry["messages"] for entry in result["data"] if "messages" in entry}
    for entry in result["data"]:
        log = stored[entry["id"]]
        assert (log["model_config_id"], log["output"]) == (entry["model_config_id"], entry["output"])
        assert log["messages"] == sent[entry["model_config_id"]]  # not the first sample's template for every log


def test_deployed_experiment_samples_a_config_per_sample(server, two_config_experiment):
    project_id = two_config_experiment["project_id"]
    deployed = patch(server, f"/projects/{project_id}/deploy-config",
                      {"experiment_id": two_config_experiment["experiment_id"]})
    assert deployed.status_code == 200, deployed.text
    result = chat(server, {"project_id": project_id, "messages": HELLO, "num_samples": 40}, "/chat-deployed")
    assert_sampled_from_both(result, two_config_experiment["models"])


# -- sessions, save, return_inputs (spec §2) ----------------------------------------------------
def test_session_reference_id_reused_gives_the_same_session(server):
    project, reference = unique("session"), unique("ref")
    body = {"project": project, "model_config": mock_config(), "messages": HELLO, "session_reference_id": reference}
    first, second = chat(server, body), chat(server, body)
    other = chat(server, {**body, "session_reference_id": unique("ref")})
    assert id_pattern("sesh").fullmatch(first["session_id"])
    assert second["session_id"] == first["session_id"]
    assert other["session_id"] != first["session_id"] and id_pattern("sesh").fullmatch(other["session_id"])
    parent = first["data"][0]["id"]
    by_id = chat(server, {**body, "session_reference_id": None, "session_id": first["session_id"],
                          "parent_id": parent})
    assert by_id["session_id"] == first["session_id"]
    stored = {log["id"]: log for log in logs(server, first["project_id"])}
    assert stored[first["data"][0]["id"]]["session_id"] == stored[second["data"][0]["id"]]["session_id"] \
        == first["session_id"]
    assert (stored[by_id["data"][0]["id"]]["session_id"], stored[by_id["data"][0]["id"]]["parent_id"]) == (
        first["session_id"], parent)


def test_save_false_stores_no_inputs_messages_or_output(server):
    project = unique("save")
    config = mock_config(chat_template=[{"role": "system", "content": "About {{topic}}"}])
    body = {"project": project, "model_config": config, "messages": HELLO, "inputs": {"topic": "secret-topic"},
            "metadata": {"kept": True}}
    kept = chat(server, body)
    dropped = chat(server, {**body, "save": False})
    assert dropped["data"][0]["output"] == "mock-model: hello there world"  # still answered
    stored = {log["id"]: log for log in logs(server, kept["project_id"])}
    saved, unsaved = stored[kept["data"][0]["id"]], stored[dropped["data"][0]["id"]]
    assert saved["inputs"] == {"topic": "secret-topic"} and saved["output"] == "mock-model: hello there world"
    assert saved["messages"][0]["content"] == "About secret-topic"
    assert (unsaved["inputs"], unsaved["messages"], unsaved["output"]) == (None, None, None)
    assert unsaved["metadata"] == {"kept": True}
    assert unsaved["model_config_id"] == kept["data"][0]["model_config_id"]


def test_return_inputs_false_returns_empty_inputs(server):
    body = {"project": unique("return-inputs"), "model_config": mock_config(), "messages": HELLO,
            "inputs": {"a": 1}, "num_samples": 2}
    assert [d["inputs"] for d in chat(server, body)["data"]] == [{"a": 1}] * 2
    result = chat(server, {**body, "return_inputs": False})
    assert [d["inputs"] for d in result["data"]] == [{}, {}]
    stored = {log["id"]: log for log in logs(server, result["project_id"])}
    assert stored[result["data"][0]["id"]]["inputs"] == {"a": 1}  # still saved


# -- the mock provider's documented contract (providers/mock.py) --------------------------------
def mock_chat(server, **config: Any) -> dict[str, Any]:
    samples = config.pop("num_samples", 1)
    messages = config.pop("messages", HELLO)
    return chat(server, {"project": "mock-contract", "model_config": mock_config(**config), "messages": messages,
                         "num_samples": samples})


def test_mock_reply_is_model_and_last_user_text(server):
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ignored"},
                {"role": "user", "content": "  second  one "}]
    assert mock_chat(server, model="echo-1", messages=messages)["data"][0]["output"] == "echo-1: second  one"
    no_user = mock_chat(server, model="echo-1", messages=[{"role": "system", "content": "x"}])
    assert no_user["data"][0]["output"] == "echo-1: (no user message)"


def test_mock_samples_identical_at_temperature_zero(server):
    outputs = [d["output"] for d in mock_chat(server, num_samples=3)["data"]]
    assert outputs == ["mock-model: hello there world"] * 3


def test_a_wild_temperature_gives_at_most_the_words_of_temperature_2(server):
    """1 + 4·temperature words made 1.5e16 loop for ever on a worker thread (found by schemathesis)."""
    output = mock_chat(server, temperature=1.5e16)["data"][0]["output"]
    assert len(output.partition(" ~ ")[2].split()) == 1 + round(4 * 2)


def test_mock_samples_differ_above_zero_and_repeat_per_request(server):
    first = [d["output"] for d in mock_chat(server, temperature=1, num_samples=3)["data"]]
    again = [d["output"] for d in mock_chat(server, temperature=1, num_samples=3)["data"]]
    assert len(set(first)) == 3
    assert again == first
    for output in first:
        prefix, _, words = output.partition(" ~ ")
        assert prefix == "mock-model: hello there world" and len(words.split()) == 1 + round(4 * 1)
    seeded = [d["output"] for d in mock_chat(server, temperature=1, num_samples=3, seed=99)["data"]]
    assert seeded != first


def test_top_level_seed_is_the_deprecated_spelling_of_the_config_seed(server):
    unseeded = [d["output"] for d in mock_chat(server, temperature=1, num_samples=2)["data"]]
    in_config = [d["output"] for d in mock_chat(server, temperature=1, num_samples=2, seed=7)["data"]]
    top_level = chat(server, {"project": "mock-contract", "model_config": mock_config(temperature=1),
                              "messages": HELLO, "num_samples": 2, "seed": 7})
    assert [d["output"] for d in top_level["data"]] == in_config != unseeded


def test_mock_max_tokens_cuts_words_and_finishes_with_length(server):
    entry = mock_chat(server, max_tokens=2)["data"][0]
    assert (entry["output"], entry["finish_reason"]) == ("mock-model: hello", "length")
    entry = mock_chat(server, max_tokens=4)["data"][0]
    assert (entry["output"], entry["finish_reason"]) == ("mock-model: hello there world", "stop")


def test_mock_stop_cuts_before_the_stop_string(server):
    entry = mock_chat(server, stop=["world", "zzz"])["data"][0]
    assert (entry["raw_output"], entry["output"], entry["finish_reason"]) == (
        "mock-model: hello there ", "mock-model: hello there", "stop")
    assert mock_chat(server, stop="there")["data"][0]["output"] == "mock-model: hello"


def test_mock_usage_counts_whitespace_words(server):
    config = {"chat_template": [{"role": "system", "content": "one two three"}], "num_samples": 2}
    result = mock_chat(server, **config)
    # prompt: 3 template words + 3 user words; generation: 4 words ("mock-model: hello there world") x 2
    assert result["usage"] == {"prompt_tokens": 6, "generation_tokens": 8, "total_tokens": 14}
