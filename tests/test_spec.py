"""Specs: endpoint choice, grid expansion order, body building, and the one shared path."""
from __future__ import annotations

import pandas as pd
import pytest

from hl_notebook.plan import axis_values, make_specs
from hl_notebook.errors import HLUsageError, MissingInputError
from hl_notebook.spec import build_body

MESSAGES = [{"role": "user", "content": "say {{word}}"}]


def test_endpoint_is_implied_or_explicit():
    assert make_specs(MESSAGES, axes={"model": ["m"]}, inputs={"word": "x"})[0].endpoint == "chat"
    assert make_specs(MESSAGES, axes={"model_config_id": ["c"]}, inputs={"word": "x"})[0].endpoint == "model-config"
    assert make_specs(MESSAGES, axes={"experiment_id": ["e"]}, inputs={"word": "x"})[0].endpoint == "experiment"
    assert make_specs(MESSAGES, deployed=True, project="p", inputs={"word": "x"})[0].endpoint == "deployed"
    with pytest.raises(HLUsageError, match="several endpoints"):
        make_specs(MESSAGES, axes={"model": ["m"], "experiment_id": ["e"]}, inputs={"word": "x"})
    with pytest.raises(HLUsageError, match="did you mean deployed"):
        make_specs(MESSAGES, endpoint="deploy", inputs={"word": "x"})


def test_grid_is_configs_times_axes_times_inputs_in_declared_order():
    rows = pd.DataFrame({"word": ["a", "b"]})
    specs = make_specs(MESSAGES, axes={"model": ["m1", "m2"], "temperature": [0.0, 1.0]}, inputs=rows)
    assert [(s.model_config["model"], s.model_config["temperature"], s.inputs["word"]) for s in specs] == [
        ("m1", 0.0, "a"), ("m1", 0.0, "b"), ("m1", 1.0, "a"), ("m1", 1.0, "b"),
        ("m2", 0.0, "a"), ("m2", 0.0, "b"), ("m2", 1.0, "a"), ("m2", 1.0, "b")]
    configs = [{"model": "x", "temperature": 0.1}, {"model": "y"}]
    specs = make_specs(MESSAGES, configs=configs, axes={"temperature": [0.5]}, inputs={"word": "w"})
    assert [s.model_config for s in specs] == [{"model": "x", "temperature": 0.1}, {"model": "y", "temperature": 0.5}]


def test_missing_inputs_fail_before_anything_is_built_and_namespace_fills_gaps():
    with pytest.raises(MissingInputError) as caught:
        make_specs(MESSAGES, axes={"model": ["m"]}, inputs=[{"word": "a"}, {"other": 1}])
    assert caught.value.names == ["word"]
    specs = make_specs(MESSAGES, axes={"model": ["m"]}, namespace={"word": "from-notebook"})
    assert specs[0].inputs == {"word": "from-notebook"}


def test_axis_values_from_comma_lists_and_variables():
    assert axis_values("temperature", "0, 0.7", {}) == [0.0, 0.7]
    assert axis_values("model_config_id", "{ids}", {"ids": ["c1", "c2"]}) == ["c1", "c2"]
    assert axis_values("max_tokens", "$n", {"n": 5}) == [5]
    with pytest.raises(HLUsageError, match="'nothing' is not defined"):
        axis_values("model", "{nothing}", {})
    with pytest.raises(HLUsageError, match="empty value"):
        axis_values("model", "a,,b", {})


def test_build_body_has_wire_names_and_keys_only_in_provider_api_keys():
    spec = make_specs(MESSAGES, axes={"model": ["m"], "max_tokens": [5]}, inputs={"word": "x"}, project="p",
                      default_provider="mock")[0]
    body = build_body(spec, {"openai": "sk-test"})
    assert body["model_config"] == {"model": "m", "max_tokens": 5, "provider": "mock"}
    assert body["provider_api_keys"] == {"openai": "sk-test"}
    assert body["messages"] == MESSAGES and body["inputs"] == {"word": "x"} and body["project"] == "p"
    assert "environment" not in body
    deployed = make_specs(MESSAGES, deployed=True, project="p", axes={"environment": ["staging"]},
                          inputs={"word": "x"})[0]
    assert build_body(deployed)["environment"] == "staging" and "model_config" not in build_body(deployed)


def test_the_per_call_copies_equal_dataclasses_replace():
    import dataclasses

    from hl_notebook.spec import ChatSpec

    # ChatSpec._copy skips __init__: it is replace() only while there is nothing __init__ would add
    assert not hasattr(ChatSpec, "__post_init__")
    assert all(f.init for f in dataclasses.fields(ChatSpec))
    [spec] = make_specs(MESSAGES, axes={"model": ["m"], "temperature": [0.5]}, inputs={"word": "x"},
                        metadata={"k": 1}, project="p")
    for changed, expected in ((spec.with_inputs({"word": "y"}), dataclasses.replace(spec, inputs={"word": "y"})),
                              (spec.with_key("k1"), dataclasses.replace(spec, call_key="k1"))):
        assert type(changed) is ChatSpec and changed == expected
        assert vars(changed) == vars(expected) and changed.call_key == expected.call_key
        with pytest.raises(dataclasses.FrozenInstanceError):
            changed.num_samples = 2  # type: ignore[misc]
    assert spec.call_key is None and spec.inputs == {"word": "x"}  # the original is untouched
    with pytest.raises(TypeError, match="no field 'nope'"):
        spec._copy(nope=1)


def test_call_keys_are_uuid4_hex():
    import uuid

    from hl_notebook.call import call_keys

    keys = call_keys(2000)
    assert len(set(keys)) == 2000 and call_keys(0) == []
    for key in keys:
        parsed = uuid.UUID(key)
        assert parsed.hex == key and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every other bit is random: over 2,000 keys each of them is set sometimes and clear sometimes
    values = [int(key, 16) for key in keys]
    fixed = (0xc000 << 48) | (0xf000 << 64)
    assert all(any(v >> bit & 1 for v in values) and not all(v >> bit & 1 for v in values)
               for bit in range(128) if not fixed >> bit & 1)
