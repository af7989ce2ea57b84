"""Cost per call: add_cost / set_price / the shipped price table, and summary()'s cost columns.

Mock usage (its docstring): prompt_tokens = words of the rendered messages, generation_tokens =
words of all samples. "user: about tea" for model "a" at temperature 0 with n samples: 2 prompt
tokens, n × 3 generation tokens ("a: about tea").
"""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import hl_notebook
from hl_notebook import pricing
from hl_notebook.errors import HLUsageError

ROWS = [{"topic": "tea"}, {"topic": "rain"}, {"topic": "maps"}]


@pytest.fixture(autouse=True)
def no_prices():
    pricing.clear_prices()
    yield
    pricing.clear_prices()


@pytest.fixture
def frame(point, server):
    point(server)
    return hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=0, inputs=ROWS, num_samples=3)


def test_cost_sums_count_each_call_once_with_a_set_price(frame):
    hl_notebook.set_price("a", prompt=1_000_000, generation=2_000_000)  # $1 per prompt token, $2 per generated
    costed = hl_notebook.add_cost(frame)
    a = costed[costed["model"] == "a"]
    assert len(a) == 9  # 3 calls × 3 samples
    per_call = 2 * 1 + 3 * 3 * 2  # 2 prompt tokens, 3 samples of 3 words
    assert a["cost_usd"].sum() == 3 * per_call
    assert costed[costed["inputs.topic"] == "tea"]["cost_usd"].sum() == per_call  # "b" is mock: free
    assert costed[costed["model"] == "b"]["cost_usd"].sum() == 0
    assert costed.groupby("call")["cost_usd"].sum().tolist() == [per_call] * 3 + [0] * 3
    assert str(costed["cost_usd"].dtype) == "Float64"
    assert list(costed.columns).index("cost_usd") == list(costed.columns).index("call_total_tokens") + 1
    assert costed["cost_usd"].isna().tolist() == costed["call_total_tokens"].isna().tolist()  # per call
    table = hl_notebook.summary(costed)
    assert table.loc["a", "total_cost_usd"] == 3 * per_call and table.loc["a", "mean_cost_usd"] == per_call
    assert table.loc["b", "total_cost_usd"] == 0
    assert hl_notebook.summary(frame).loc["a", "total_cost_usd"] == 3 * per_call  # computed when missing


def test_cost_sums_hold_on_history_and_filters(frame):
    hl_notebook.set_price("a", prompt=1_000_000, generation=0)
    history = hl_notebook.add_cost(hl_notebook.history())
    this_run = history[history["call_key"].isin(frame["call_key"])]
    assert this_run["cost_usd"].sum() == 3 * 2  # 3 calls of model a, 2 prompt tokens each
    samples_one = this_run[this_run["sample"] == 1]  # a filter that drops each call's first row...
    assert samples_one["cost_usd"].sum() == 0  # ...drops its cost too: never counted twice


def test_an_unknown_model_costs_na_never_a_guess():
    # only the mock provider answers offline, and it is free: other providers' rows are synthetic
    synthetic = pd.DataFrame({"provider": ["openai", "openai", "mock", None],
                              "model": ["gpt-4o-mini-2099", "gpt-4o-mini", "x", "gpt-4o-mini"],
                              "call": [0, 1, 2, 3], "call_prompt_tokens": [10, 10, 10, 10],
                              "call_generation_tokens": [5, 5, 5, 5], "output": ["", "", "", ""]})
    costs = hl_notebook.add_cost(synthetic)["cost_usd"]
    assert pd.isna(costs[0]) and pd.isna(costs[3])  # a similar name is not the model; no provider, no price
    assert costs[1] == pytest.approx((10 * 0.15 + 5 * 0.6) / 1e6)  # the shipped openai price
    assert costs[2] == 0  # mock without a price
    hl_notebook.set_price("gpt-4o-mini", prompt=1, generation=1)  # on any provider, an unknown one included
    costs = hl_notebook.add_cost(synthetic)["cost_usd"]
    assert pd.isna(costs[0]) and costs.iloc[1:].tolist() == [15 / 1e6, 0, 15 / 1e6]


def test_a_provider_specific_price_wins_over_any_provider():
    hl_notebook.set_price("m", prompt=1, generation=1)
    hl_notebook.set_price("m", prompt=2, generation=2, provider="openai")
    assert pricing.price_of("openai", "m").prompt == 2
    assert pricing.price_of("mock", "m").prompt == 1
    assert pricing.price_of("mock", "other").prompt == 0
    assert pricing.price_of("anthropic", "other") is None


def test_older_frames_with_repeated_token_columns_are_priced_once_per_call():
    legacy = pd.DataFrame({"provider": "mock", "model": "a", "call": [0, 0, 1], "sample": [0, 1, 0],
                           "prompt_tokens": [2, 2, 4], "generation_tokens": [6, 6, 3], "output": ["x", "x", "y"]})
    hl_notebook.set_price("a", prompt=1_000_000, generation=1_000_000)
    costs = hl_notebook.add_cost(legacy)["cost_usd"]
    assert costs.sum() == 8 + 7 and pd.isna(costs[1])


@pytest.mark.parametrize("kwargs", [{"prompt": -1, "generation": 0}, {"prompt": math.inf, "generation": 0},
                                    {"prompt": "1", "generation": 0}, {"prompt": True, "generation": 0}])
def test_set_price_rejects_what_is_not_a_price(kwargs):
    with pytest.raises(HLUsageError, match="USD per million tokens"):
        hl_notebook.set_price("m", **kwargs)
    with pytest.raises(HLUsageError, match="non-empty string"):
        hl_notebook.set_price("", prompt=1, generation=1)


def test_the_shipped_table_gives_a_date_and_source_for_every_price():
    table = json.loads(pricing.PRICES_FILE.read_text())
    assert table["prices"]
    for entry in table["prices"]:
        assert entry["source"].startswith("https://") and len(entry["date"]) == 10
        assert entry["prompt"] >= 0 and entry["generation"] >= 0 and entry["models"]
    assert "mock" not in {entry["provider"] for entry in table["prices"]}
