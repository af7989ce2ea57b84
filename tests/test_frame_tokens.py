"""Token counts add up: each call's usage is counted once, whatever frame is summed (issue 11.1).

The v4 wire reports ``usage`` per response (one call), not per sample; the server's logs keep it
with every sample's log, which is what the frame is checked against.
"""
from __future__ import annotations

import pandas as pd

import hl_notebook
from hl_notebook.call import CallResult
from hl_notebook.frame import TOKEN_COLUMNS, conform, to_frame
from hl_notebook.spec import ChatSpec

SPEC = ChatSpec(endpoint="chat", messages=({"role": "user", "content": "hi"},),
                model_config={"model": "m", "provider": "mock"}, num_samples=3)
USAGE = {"prompt_tokens": 2, "generation_tokens": 9, "total_tokens": 11}


def response(n: int) -> dict:
    return {"usage": USAGE, "data": [{"id": f"data_{i}", "index": i, "output": f"o{i}"} for i in range(n)]}


def server_usage(server, project: str) -> dict[str, dict]:
    """log id -> the usage the server stored for that log's call."""
    projects = server.get("/projects", params={"size": 1000}).json()["records"]
    project_id = next(p["id"] for p in projects if p["name"] == project)
    logs = server.get("/logs", params={"project_id": project_id, "size": 1000}).json()["records"]
    return {log["id"]: log["usage"] for log in logs}


def test_a_three_sample_call_sums_to_its_usage_once():
    frame = to_frame([CallResult(0, SPEC, response(3))])
    assert frame["sample"].tolist() == [0, 1, 2]
    assert frame["call_total_tokens"].sum() == 11
    assert frame["call_prompt_tokens"].sum() == 2 and frame["call_generation_tokens"].sum() == 9
    assert frame["call_total_tokens"].isna().tolist() == [False, True, True]  # on the call's first row
    assert frame["call_total_tokens"].mean() == 11  # mean per call


def test_token_columns_are_per_call_nullable_integers_and_the_old_names_are_gone():
    frame = to_frame([])
    assert {name: str(frame[name].dtype) for name in TOKEN_COLUMNS} == dict.fromkeys(TOKEN_COLUMNS, "Int64")
    assert not {"prompt_tokens", "generation_tokens", "total_tokens"} & set(frame.columns)


def test_a_failed_call_and_a_call_without_usage_add_nothing():
    failed = CallResult(1, SPEC, None, hl_notebook.errors.HLServerError("down", status_code=500, endpoint="/chat"))
    silent = CallResult(2, SPEC, {"data": [{"id": "d", "index": 0, "output": "x"}]})
    frame = to_frame([CallResult(0, SPEC, response(2)), failed, silent])
    assert frame["call_total_tokens"].sum() == 11
    assert frame.groupby("call")["call_total_tokens"].sum().tolist() == [11, 0, 0]


def test_history_frames_concatenated_still_add_up():
    one = to_frame([CallResult(0, SPEC, response(3))])
    both = pd.concat([conform(one), conform(one)], ignore_index=True)
    assert both["call_total_tokens"].sum() == 22


def test_magic_three_samples_sum_to_the_servers_usage(shell, server):
    frame = shell.run_cell_magic("hlchat", "--model m --temperature 0.7 -n 3 --project tokens-one",
                                 "user: count these words please")
    usage = server_usage(server, "tokens-one")
    assert len(frame) == 3 and set(frame["log_id"]) <= set(usage)
    call_usage = usage[frame["log_id"][0]]
    assert all(usage[log_id] == call_usage for log_id in frame["log_id"])  # the server's per-call usage
    assert frame["call_total_tokens"].sum() == call_usage["total_tokens"] > 0
    assert frame["call_prompt_tokens"].sum() == call_usage["prompt_tokens"]
    assert frame["call_generation_tokens"].sum() == call_usage["generation_tokens"]


def test_a_24_call_sweep_sums_to_the_servers_usage_per_call_and_in_total(point, server):
    point(server)
    rows = [{"topic": t} for t in ("tea", "rain", "maps", "owls", "salt", "jazz")]
    frame = hl_notebook.sweep("user: a few words about {{topic}} today", model=["a", "b"],
                              temperature=[0.0, 0.9], inputs=rows, num_samples=2, project="tokens-sweep")
    assert frame["call"].nunique() == 24 and len(frame) == 48
    usage = server_usage(server, "tokens-sweep")
    per_call = {call: usage[group["log_id"].iloc[0]]["total_tokens"] for call, group in frame.groupby("call")}
    assert frame.groupby("call")["call_total_tokens"].sum().to_dict() == per_call
    assert frame["call_total_tokens"].sum() == sum(per_call.values())
    summary = hl_notebook.summary(frame)
    assert summary["mean_call_total_tokens"].mul(summary["calls"]).sum() == sum(per_call.values())
