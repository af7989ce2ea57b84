"""The DataFrame contract: columns, order, dtypes, one row per sample, errors kept with the data."""
from __future__ import annotations

import pandas as pd

from hl_notebook.call import CallResult
from hl_notebook.errors import HLRateLimitError, HLStreamError
from hl_notebook.frame import columns, conform, to_frame
from hl_notebook.spec import ChatSpec

SPEC = ChatSpec(endpoint="chat", messages=({"role": "user", "content": "hi {{name}}"},),
                model_config={"model": "m", "provider": "mock", "temperature": 0.5, "stop": ["a", "b"]},
                inputs={"name": "Ann"}, num_samples=2, project="p")
DTYPES = {"call": "Int64", "sample": "Int64", "temperature": "float64", "call_prompt_tokens": "Int64",
          "output": "string", "created_at": "datetime64[ns, UTC]", "cached": "bool", "error": "string"}


def response(n: int) -> dict:
    return {"project_id": "pr_x", "usage": {"prompt_tokens": 2, "generation_tokens": 4, "total_tokens": 6},
            "data": [{"id": f"data_{i}", "index": i, "output": f"out {i}", "finish_reason": "stop",
                      "model_config_id": "config_1", "tool_calls": None} for i in reversed(range(n))]}


def test_empty_result_has_the_full_schema():
    frame = to_frame([])
    assert list(frame.columns) == [name for name, _ in columns()]
    assert {k: str(frame[k].dtype) for k in DTYPES} == DTYPES


def test_one_row_per_sample_in_index_order_with_usage_on_the_first():
    frame = to_frame([CallResult(0, SPEC, response(2), latency_s=0.1)])
    assert frame["sample"].tolist() == [0, 1]
    assert frame["output"].tolist() == ["out 0", "out 1"]
    assert frame["call_total_tokens"].tolist() == [6, pd.NA]
    assert frame["stop"].tolist() == ['["a", "b"]'] * 2
    assert frame["inputs.name"].tolist() == ["Ann", "Ann"]
    assert frame["prompt"].tolist() == ["hi Ann", "hi Ann"]
    names = list(frame.columns)
    assert names.index("model_config_id") < names.index("inputs.name") < names.index("prompt")
    assert {k: str(frame[k].dtype) for k in DTYPES} == DTYPES


def test_failed_call_is_one_row_and_partial_stream_keeps_text():
    failed = CallResult(1, SPEC, None, HLRateLimitError("too many", status_code=429, endpoint="/chat"))
    partial = CallResult(0, SPEC, {"data": [{"id": "data_0", "index": 0, "output": "half"}]},
                         HLStreamError("cut", partial="half"))
    frame = to_frame([failed, partial])  # completion order differs from declared order
    assert frame["call"].tolist() == [0, 1]
    assert frame["output"].tolist()[0] == "half"
    assert frame["error_type"].tolist() == ["HLStreamError", "HLRateLimitError"]
    assert frame["sample"].isna().tolist() == [False, True]


def test_config_columns_filled_from_registered_configs():
    spec = ChatSpec(endpoint="model-config", messages=({"role": "user", "content": "x"},), model_config_id="config_1")
    frame = to_frame([CallResult(0, spec, response(1))], {"config_1": {"model": "reg", "temperature": 0.2}})
    assert frame[["model", "temperature", "model_config_id"]].values.tolist() == [["reg", 0.2, "config_1"]]
    assert frame[["provider", "top_p", "max_tokens"]].values.tolist() == [["openai", 1.0, -1]]  # wire defaults


def test_conform_restores_dtypes_of_json_records():
    frame = to_frame([CallResult(0, SPEC, response(2))])
    import json
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    again = conform(records)
    assert {k: str(again[k].dtype) for k in DTYPES} == DTYPES
    assert again["output"].tolist() == frame["output"].tolist()


def test_display_shows_output_and_hides_technical_and_empty_columns():
    frame = to_frame([CallResult(0, SPEC, response(2))])
    assert type(frame).__name__ == "ResultFrame" and len(frame.columns) == len(columns(["name"]))
    view = frame.display_view()
    assert "output" in view.columns and "error" in view.columns
    assert not {"request", "log_id", "created_at", "seed"} & set(view.columns)
    assert "columns not shown" in frame._repr_html_() and "out 0" in frame._repr_html_()
    assert type(frame[["output"]]).__name__ == "DataFrame"  # derived frames are plain pandas


def test_a_lone_surrogate_in_an_output_is_kept_whatever_the_string_storage():
    """Valid in a Python str (a provider's JSON may carry one), not in UTF-8: pyarrow refuses it."""
    partial = {"data": [{"id": "data_0", "index": 0, "output": "half \ud800 done"}]}
    frame = to_frame([CallResult(0, SPEC, partial)])
    assert frame["output"].tolist() == ["half \ud800 done"] and str(frame["output"].dtype) == "string"
    assert conform(pd.DataFrame(frame))["output"].tolist() == ["half \ud800 done"]
