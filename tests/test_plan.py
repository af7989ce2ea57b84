"""Planning (options / arguments -> ChatSpecs) with the values real notebooks hold: NaN, None, numpy
scalars, timestamps, ragged config lists, out-of-range numbers. Everything here happens before any
network call, and every body it produces must encode as strict JSON."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from hl_notebook.errors import HLUsageError
from hl_notebook.plan import axis_values, make_specs, plain, unfilled
from hl_notebook.spec import PARAMETERS, build_body

MESSAGES = [{"role": "user", "content": "say {{word}}"}]


def strict_json(spec) -> str:
    """What requests would do with ``json=``: NaN, numpy and timestamps are refused there."""
    return json.dumps(build_body(spec), allow_nan=False)


def test_plain_turns_pandas_and_numpy_values_into_json_values():
    stamp = pd.Timestamp("2026-11-29T10:00:00Z")
    value = {"a": np.int64(3), "b": np.float32(0.5), "c": float("nan"), "d": pd.NA, "e": pd.NaT, "f": None,
             "g": stamp, "h": dt.date(2026, 1, 2), "i": np.array([1, 2]), "j": (np.bool_(True),), "k": "x"}
    assert plain(value) == {"a": 3, "b": 0.5, "c": None, "d": None, "e": None, "f": None,
                            "g": "2026-11-29T10:00:00+00:00", "h": "2026-01-02", "i": [1, 2], "j": [True], "k": "x"}
    with pytest.raises(HLUsageError, match=r"inputs\.x: inf is not a finite number"):
        plain({"x": float("inf")}, "inputs")


def test_an_inputs_frame_with_empty_cells_numpy_and_timestamps_plans_strict_json():
    # pandas 3 stores None in a string column as NaN (pitfall 15); an unused NaN column is harmless
    rows = pd.DataFrame({"word": ["a", None, "c"], "n": np.array([1, 2, 3], dtype=np.int64),
                         "when": pd.to_datetime(["2026-01-01", "2026-01-02", None]), "unused": [np.nan] * 3})
    specs = make_specs(MESSAGES, axes={"model": ["m"]}, inputs=rows)
    for spec in specs:
        strict_json(spec)
    assert specs[0].inputs == {"word": "a", "n": 1, "when": "2026-01-01T00:00:00", "unused": None}
    assert [unfilled(s) for s in specs] == [[], ["word"], []]  # the empty cell fails its own row only


def test_a_ragged_list_of_config_dicts_as_a_frame_means_not_set():
    configs = pd.DataFrame([{"model": "a", "temperature": 0.2}, {"model": "b", "max_tokens": np.int64(5)}])
    specs = make_specs(MESSAGES, configs=configs, inputs={"word": "w"})
    assert [s.model_config for s in specs] == [{"model": "a", "temperature": 0.2}, {"model": "b", "max_tokens": 5}]
    assert isinstance(specs[1].model_config["max_tokens"], int)
    with pytest.raises(HLUsageError, match=r"configs row 1, temperature: 9.0 is out of range \(0 to 2\)"):
        make_specs(MESSAGES, configs=[{"model": "a"}, {"model": "b", "temperature": 9.0}], inputs={"word": "w"})
    with pytest.raises(HLUsageError, match="configs row 0: unknown config field 'temprature'"):
        make_specs(MESSAGES, configs=[{"model": "a", "temprature": 1}], inputs={"word": "w"})


@pytest.mark.parametrize("name, raw, message", [
    ("temperature", "nan", "--temperature: 'nan' is not a finite number"),
    ("temperature", "inf", "--temperature: 'inf' is not a finite number"),
    ("temperature", "5", "--temperature: '5' is out of range (0 to 2)"),
    ("top_p", "7", "--top-p: '7' is out of range (0 to 1)"),
    ("presence_penalty", "9", "--presence-penalty: '9' is out of range (-2 to 2)"),
    ("max_tokens", "-5", "--max-tokens: '-5' is out of range (at least -1)"),
    ("max_tokens", "2.5", "--max-tokens: '2.5' is not a valid int"),
    ("seed", "x", "--seed: 'x' is not a valid int"),
])
def test_option_values_are_checked_against_the_parameter_table(name, raw, message):
    with pytest.raises(HLUsageError) as caught:
        axis_values(name, raw, {})
    assert str(caught.value) == message


def test_python_axis_values_are_made_plain_and_checked():
    specs = make_specs(MESSAGES, axes={"model": ["m"], "temperature": [np.float64(0.5)], "seed": [np.int64(7)]},
                       inputs={"word": "w"})
    assert specs[0].model_config == {"model": "m", "temperature": 0.5, "seed": 7}
    assert type(specs[0].model_config["seed"]) is int
    with pytest.raises(HLUsageError, match="not a finite number"):
        make_specs(MESSAGES, axes={"model": ["m"], "temperature": [float("inf")]}, inputs={"word": "w"})
    assert axis_values("max_tokens", "-1", {}) == [-1]  # the wire's "no limit"


def test_metadata_other_and_notebook_variables_are_made_plain():
    spec = make_specs(MESSAGES, axes={"model": ["m"]}, namespace={"word": np.int64(4)},
                      metadata={"run": np.int64(1), "score": float("nan"), "at": pd.Timestamp("2026-01-01")},
                      other={"top_k": np.int64(5)})[0]
    assert spec.inputs == {"word": 4}
    assert spec.metadata == {"run": 1, "score": None, "at": "2026-01-01T00:00:00"}
    assert build_body(spec)["model_config"]["other"] == {"top_k": 5}
    strict_json(spec)


def test_every_parameter_has_an_option_a_column_and_a_range_text():
    from hl_notebook.frame import CONFIG_KEYS, columns
    from hl_notebook.magic import OPTION_NAMES

    names = [name for name, _ in columns()]
    for parameter in PARAMETERS:
        assert parameter.option in OPTION_NAMES
        assert parameter.name in names and parameter.name in CONFIG_KEYS
        if parameter.low is not None or parameter.high is not None:
            assert parameter.range_text


def test_notebook_values_inside_comma_lists_and_expressions():
    namespace = {"a": "config_a", "b": ["config_b", "config_c"], "exp": {"id": "exp_1"}, "t": np.float64(0.3)}
    assert axis_values("model_config_id", "{a},{b}", namespace) == ["config_a", "config_b", "config_c"]
    assert axis_values("model_config_id", "{a}, literal ,$a", namespace) == ["config_a", "literal", "config_a"]
    assert axis_values("experiment_id", '{exp["id"]}', namespace) == ["exp_1"]
    assert axis_values("temperature", "0,{t},{t * 2}", namespace) == [0.0, 0.3, 0.6]
    with pytest.raises(HLUsageError, match=r"--experiment-id: \{exp\['nope'\]\} could not be evaluated \(KeyError"):
        axis_values("experiment_id", "{exp['nope']}", namespace)
    with pytest.raises(HLUsageError, match="--model-config-id: 'missing' is not defined in the notebook"):
        axis_values("model_config_id", "{a},{missing}", namespace)
    with pytest.raises(HLUsageError, match="out of range"):
        axis_values("temperature", "{t * 10}", namespace)


def test_a_misspelled_parameter_is_named_with_the_one_meant():
    with pytest.raises(HLUsageError, match=r"^unknown parameter 'temprature'; did you mean temperature\?; use model, "):
        make_specs([{"role": "user", "content": "hi"}], axes={"model": ["m"], "temprature": [0.5]})


@pytest.mark.parametrize("messages", [b"user: hi", ["hi"], {"role": "user", "content": "hi"}, 5, None],
                         ids=["bytes", "list of str", "one dict", "int", "None"])
def test_messages_that_are_neither_text_nor_message_dicts_are_one_line(messages):
    """They raised TypeError or ValueError from deep inside (``'int' object is not iterable``)."""
    import hl_notebook

    with pytest.raises(HLUsageError, match=r"^messages must be cell-format text \('user: hi'\) or a list of "
                                           r"message dicts \(\{'role': 'user', 'content': 'hi'\}\), not "):
        hl_notebook.chat(messages, model="m")


def test_a_call_that_cannot_be_planned_starts_no_server(monkeypatch):
    """Planning comes before connecting in the API too (as in the magic): a mistake in the arguments
    must not start the embedded server (seconds, and a process) first."""
    import hl_notebook
    from hl_notebook import connection

    monkeypatch.delenv("HUMANLOOP_BASE_URL", raising=False)
    monkeypatch.setattr(connection, "connect", lambda *a, **k: pytest.fail("connected before planning"))
    monkeypatch.setattr("hl_notebook.api.connect", connection.connect)
    with pytest.raises(HLUsageError, match="unknown parameter 'temprature'"):
        hl_notebook.sweep("user: hi", model="m", temprature=0)
    assert len(hl_notebook.sweep("user: {{x}}", model="m", inputs=[])) == 0  # no calls: no server either


def test_sweeping_a_parameter_that_a_configs_row_sets_is_refused():
    """``--temperature 0,1`` over configs whose row sets temperature made that row's call twice,
    identically (the row's value wins); one value of an option still fills what a row leaves unset."""
    configs = [{"model": "a", "temperature": 0.5}, {"model": "b"}]
    with pytest.raises(HLUsageError, match=r"^--temperature sweeps temperature, which the configs set \(row 0\): "
                                           r"each of that row's calls would be made 2 times; set it in one place$"):
        make_specs([{"role": "user", "content": "x"}], axes={"temperature": [0, 1]}, configs=configs)
    filled = make_specs([{"role": "user", "content": "x"}], axes={"temperature": [0.9]}, configs=configs)
    assert [s.model_config["temperature"] for s in filled] == [0.5, 0.9]
    crossed = make_specs([{"role": "user", "content": "x"}], axes={"max_tokens": [5, 9]}, configs=configs)
    assert [(s.model_config["model"], s.model_config["max_tokens"]) for s in crossed] == \
        [("a", 5), ("a", 9), ("b", 5), ("b", 9)]  # a parameter the configs leave alone still sweeps
