"""Parameter columns hold the value the server used: sent, else the registered config's, else the
wire default (issue 11.2), on all four endpoints."""
from __future__ import annotations

import pandas as pd

import hl_notebook
from hl_notebook.call import CallResult
from hl_notebook.errors import HLServerError
from hl_notebook.frame import to_frame
from hl_notebook.spec import PARAMETER, ChatSpec

MESSAGES = ({"role": "user", "content": "x"},)
DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "max_tokens": -1, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def entry(config_id: str, index: int = 0) -> dict:
    return {"id": f"data_{index}", "index": index, "output": "o", "model_config_id": config_id}


def test_the_wire_defaults_are_those_of_the_parameter_table():
    assert {name: PARAMETER[name].default for name in DEFAULTS} == DEFAULTS


def test_chat_rows_fill_what_was_not_sent_with_the_wire_default():
    spec = ChatSpec(endpoint="chat", messages=MESSAGES, model_config={"model": "m", "provider": "mock"})
    frame = to_frame([CallResult(0, spec, {"data": [entry("config_c")]})])
    row = frame.iloc[0]
    assert {name: row[name] for name in DEFAULTS} == DEFAULTS
    assert row["provider"] == "mock" and row["model"] == "m"
    assert frame["seed"].isna().all() and frame["stop"].isna().all()  # no default: nothing to fill


def test_a_failed_chat_call_shows_its_config_too():
    spec = ChatSpec(endpoint="chat", messages=MESSAGES, model_config={"model": "m", "temperature": 0.0})
    frame = to_frame([CallResult(0, spec, None, HLServerError("x", status_code=500, endpoint="/chat"))])
    assert frame.loc[0, "temperature"] == 0.0 and frame.loc[0, "top_p"] == 1.0
    assert frame.loc[0, "provider"] == "openai"  # the wire default when none was sent


def test_registered_values_then_defaults_for_every_other_endpoint():
    configs = {"config_r": {"model": "reg", "provider": "mock", "temperature": 0.2},
               "config_s": {"model": "reg2", "provider": "mock", "max_tokens": 5}}
    results = []
    for call, (endpoint, selector) in enumerate([("model-config", {"model_config_id": "config_r"}),
                                                 ("experiment", {"experiment_id": "exp_1"}),
                                                 ("deployed", {"project": "p"})]):
        spec = ChatSpec(endpoint=endpoint, messages=MESSAGES, num_samples=2, **selector)
        results.append(CallResult(call, spec, {"data": [entry("config_r", 0), entry("config_s", 1)]}))
    frame = to_frame(results, configs)
    assert frame["temperature"].tolist() == [0.2, 1.0] * 3
    assert frame["max_tokens"].tolist() == [-1, 5] * 3
    assert frame["model"].tolist() == ["reg", "reg2"] * 3
    assert frame.groupby(["model", "temperature", "max_tokens", "top_p"]).ngroups == 2


def test_an_unknown_config_stays_empty_rather_than_guessed():
    spec = ChatSpec(endpoint="model-config", messages=MESSAGES, model_config_id="config_gone")
    frame = to_frame([CallResult(0, spec, None, HLServerError("x", status_code=500, endpoint="/chat"))])
    assert frame[["model", "temperature", "top_p"]].isna().all().all()


def test_magic_without_parameters_shows_what_the_server_used(shell):
    frame = shell.run_cell_magic("hlchat", "--model m -n 2", "user: defaults please")
    assert frame["temperature"].tolist() == [1.0, 1.0]
    assert frame["top_p"].tolist() == [1.0, 1.0]
    assert frame["max_tokens"].tolist() == [-1, -1]
    assert frame["presence_penalty"].tolist() == [0.0, 0.0]
    assert frame["provider"].tolist() == ["mock", "mock"]  # as sent


def test_registered_config_without_temperature_shows_the_default(shell):
    client = hl_notebook.api_client()
    config = client.register_config("frame-config", model="plain-model", provider="mock", max_tokens=7)
    shell.user_ns["plain_id"] = config["config"]["id"]
    frame = shell.run_cell_magic("hlchat", "--model-config-id {plain_id}", "user: hello there")
    assert frame["temperature"].tolist() == [1.0]
    assert frame["max_tokens"].tolist() == [7] and frame["model"].tolist() == ["plain-model"]
    assert frame["top_p"].tolist() == [1.0] and frame["provider"].tolist() == ["mock"]


def test_a_sweep_over_explicit_and_default_temperature_is_one_group(point, server):
    point(server)
    implicit = hl_notebook.sweep("user: q", model="m", num_samples=2)
    explicit = hl_notebook.sweep("user: q", model="m", temperature=1.0, num_samples=2)
    both = pd.concat([implicit, explicit], ignore_index=True)
    assert both.groupby(["model", "temperature", "top_p", "max_tokens"], dropna=False).ngroups == 1
