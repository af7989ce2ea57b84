"""to_frame builds by columns and caches what calls share; the result must be what the plain
per-row definition gives (a reference written the simple way here), byte for byte."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from hl_notebook import frame as frame_module
from hl_notebook.call import CallResult
from hl_notebook.errors import HLStreamError
from hl_notebook.frame import CONFIG_KEYS, USAGE_FIELDS, SpecColumns, conform, effective_params, to_frame
from hl_notebook.parse import last_user_text
from hl_notebook.spec import ChatSpec, spec_to_json
from hl_notebook.template import render

BASE = ChatSpec(endpoint="chat", messages=({"role": "system", "content": "be {{tone}}"},
                                           {"role": "user", "content": "about {{topic}} and {{ missing }} {{n}}"}),
                model_config={"model": "m", "provider": "mock", "stop": ["x"]}, project="p", num_samples=2,
                metadata={"z": 1, "a": [1, "é"]})
INPUTS = [{"topic": "tea", "tone": "dry", "n": 3},
          {"topic": "ünïcode \"quoted\"\n", "tone": None, "n": [1, {"b": 2, "a": None}]},
          {"topic": "{{topic}}", "n": 1.5}, {"n": None}]
OTHER = [ChatSpec(endpoint="chat", messages=({"role": "user", "content": [{"type": "text", "text": "a {{topic}}"},
                                                                           {"type": "image_url", "image_url": {}},
                                                                           {"type": "text", "text": "b"}]},),
                  model_config={"model": "m"}, inputs={"topic": "t"}),
         ChatSpec(endpoint="chat", messages=({"role": "assistant", "content": "no user"},), model_config={"model": "m"}),
         ChatSpec(endpoint="chat", messages=({"role": "user", "content": None},), model_config={"model": "m"}),
         ChatSpec(endpoint="deployed", messages=({"role": "user", "content": "d"},), project="p", environment="prod"),
         ChatSpec(endpoint="experiment", messages=({"role": "user", "content": "e"},), experiment_id="exp_1",
                  session_id="s", save=False, stream=True, source="x")]


def results() -> list[CallResult]:
    specs = [BASE.with_inputs(row) for row in INPUTS] + OTHER
    out = []
    for call, spec in enumerate(specs):
        data = [{"id": f"d{call}_{i}", "index": i, "output": f"o{i}", "finish_reason": "stop",
                 "model_config_id": "config_1", "tool_calls": [{"id": "t"}] if i else None}
                for i in reversed(range(spec.num_samples))]
        response = {"project_id": "pr_1", "data": data, "usage": {"prompt_tokens": 1, "total_tokens": 3}}
        error = HLStreamError("cut", partial="o0") if call == 2 else None
        out.append(CallResult(call, replace(spec, call_key=f"k{call}"), None if call == 3 else response, error,
                              latency_s=0.5))
    return out


def reference(result: CallResult, configs: dict) -> list[dict]:
    """The frame rows of one call, defined the simple way (one dict per row)."""
    spec, response = result.spec, result.response or {}
    base = {"call": result.call, "call_key": spec.call_key, "endpoint": spec.endpoint, "project": spec.project,
            "project_id": response.get("project_id") or spec.project_id, "environment": spec.environment,
            "experiment_id": spec.experiment_id, "model_config_id": spec.model_config_id,
            "prompt": last_user_text(render(list(spec.messages), spec.inputs)), "latency_s": result.latency_s,
            "created_at": result.created_at, "cached": result.cached, "request": spec_to_json(spec),
            **{f"inputs.{k}": v if isinstance(v, str) or v is None else __import__("json").dumps(v, sort_keys=True)
               for k, v in spec.inputs.items()}}
    if result.error is not None:
        base.update(error=str(result.error), error_type=type(result.error).__name__)
    samples = sorted(response.get("data") or [], key=lambda e: e["index"]) or [{}]
    rows = []
    for position, entry in enumerate(samples):
        config_id = entry.get("model_config_id") or spec.model_config_id
        registered = configs.get(config_id or "")
        params = effective_params(spec.model_config, registered, spec.endpoint == "chat" or registered is not None)
        rows.append({**base, **dict(zip(CONFIG_KEYS, params)), "sample": entry.get("index"),
                     "log_id": entry.get("id"), "model_config_id": config_id, "output": entry.get("output"),
                     "finish_reason": entry.get("finish_reason"),
                     "tool_calls": None if entry.get("tool_calls") is None else
                     __import__("json").dumps(entry["tool_calls"], sort_keys=True),
                     **{column: (response.get("usage") or {}).get(field) if position == 0 else None
                        for column, field in USAGE_FIELDS.items()}})
    return rows


def test_to_frame_equals_the_per_row_definition():
    configs = {"config_1": {"model": "reg", "temperature": 0.3}}
    given = results()
    fast = to_frame(list(reversed(given)), configs)
    slow = conform([row for result in given for row in reference(result, configs)])
    pd.testing.assert_frame_equal(pd.DataFrame(fast), pd.DataFrame(slow))


def test_request_column_is_spec_to_json_byte_for_byte():
    given = results()
    frame = to_frame(given)
    expected = [spec_to_json(r.spec) for r in given for _ in range(max(1, len((r.response or {}).get("data") or [])))]
    assert frame["request"].tolist() == expected


def test_prompt_renders_like_the_server_template_rules():
    frame = to_frame(results()).drop_duplicates("call")
    assert frame["prompt"].tolist()[:4] == ['about tea and {{ missing }} 3',
                                            'about ünïcode "quoted"\n and {{ missing }} [1, {"b": 2, "a": null}]',
                                            'about {{topic}} and {{ missing }} 1.5',
                                            'about {{topic}} and {{ missing }} null']
    assert frame["prompt"].tolist()[4] == "a t\nb"
    assert frame["prompt"].isna().tolist()[5:7] == [True, True]


def test_a_registered_value_of_the_wrong_type_is_missing_not_an_error():
    spec = ChatSpec(endpoint="model-config", messages=({"role": "user", "content": "x"},), model_config_id="c")
    frame = to_frame([CallResult(0, spec, {"data": [{"id": "d", "index": 0, "model_config_id": "c"}]})],
                     {"c": {"seed": "not a number", "max_tokens": 2.5, "temperature": "hot"}})
    assert frame[["seed", "max_tokens", "temperature"]].isna().all().all()
    assert str(frame["seed"].dtype) == "Int64" and str(frame["temperature"].dtype) == "float64"


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
def test_an_all_missing_text_column_is_the_frames_string_column_of_na(storage):
    """A column no call gave a value (error, tool_calls on a clean run) is made without a value per
    row; with Arrow storage straight from Arrow. It must equal the column made from the values."""
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    with pd.option_context("mode.string_storage", storage):
        made = frame_module._missing(4, "string")
        from_values = pd.array([None] * 4, dtype="string")
        assert made.dtype == from_values.dtype and made.dtype.storage == storage
        assert pd.Series(made).equals(pd.Series(from_values)) and pd.Series(made).isna().all()
        filled = pd.concat([pd.Series(made), pd.Series(frame_module.string_array(["a"]))], ignore_index=True)
        assert filled.dtype == from_values.dtype and filled.tolist()[-1] == "a"


# -- the spec columns built ahead (a sweep builds them while its calls run) ---------------------
def test_spec_columns_built_ahead_give_the_same_frame_whole_or_in_part():
    configs = {"config_1": {"model": "reg", "temperature": 0.3}}
    given = results()
    plain = to_frame(given, configs)
    for steps in (0, 1, 3, None):  # none built yet, partly, all
        prepared = SpecColumns([r.spec for r in given])
        prepared.STEP = 2
        for _ in range(steps if steps is not None else 10_000):
            if not prepared.build_some(seconds=0):
                break
        assert steps != 0 or not prepared.arrays
        pd.testing.assert_frame_equal(pd.DataFrame(to_frame(given, configs, prepared)), pd.DataFrame(plain))
        assert prepared.complete


def test_to_frame_takes_the_built_columns_only_for_their_own_specs():
    given = results()
    prepared = SpecColumns([r.spec for r in given])
    prepared.finished()
    prepared.arrays["request"] = pd.array(["built ahead"] * len(given), dtype="string")
    assert set(to_frame(given, None, prepared)["request"]) == {"built ahead"}  # used
    others = [replace(r, spec=replace(r.spec)) for r in given]  # equal specs, other objects
    assert "built ahead" not in set(to_frame(others, None, prepared)["request"])  # not theirs: not used
    assert "built ahead" not in set(to_frame(given[:-1], None, prepared)["request"])
