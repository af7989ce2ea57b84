"""Sweeps under injected faults: a 1,000-request sweep loses nothing, retry() finishes it, a stream
cut mid-way keeps its partial text with the error on its row, and faults injected *after* a call
was logged (a replaced 500, a dropped connection, a read timeout) never make retry() log it twice."""
from __future__ import annotations

import pandas as pd
import pytest

import hl_notebook
from hl_notebook.config import HLSettings
from support import ServerProcess


def retried_until_clean(frame: pd.DataFrame, rounds: int = 20) -> pd.DataFrame:
    for _ in range(rounds):
        if frame["error"].isna().all():
            break
        frame = hl_notebook.retry(frame, concurrency=8)
    return frame


def faulty_server(tmp_path, point, rates: str, seed: int) -> ServerProcess:
    return point(ServerProcess(tmp_path / "faults.sqlite", extra_args=[
        "--faults", "--fault-rates", rates, "--fault-seed", str(seed), "--fault-retry-after", "0"]).start())


def test_thousand_requests_with_500s_429s_and_drops(point, tmp_path, capsys):
    server = faulty_server(tmp_path, point, "500=0.10,429=0.05,drop=0.02", seed=11)
    try:
        HLSettings.instance().max_retries = 2
        inputs = pd.DataFrame({"i": range(1000)})
        frame = hl_notebook.sweep("user: n{{i}}", model="m", temperature=0, inputs=inputs, concurrency=16,
                                  project="reliability")
        assert frame["call"].tolist() == list(range(1000))  # every request is a row, none twice
        failed = frame[frame["error"].notna()]
        ok = frame[frame["error"].isna()]
        assert 50 < len(failed) < 200  # ~12% of requests fail for good (500s and drops are not retried)
        assert set(failed["error_type"]) <= {"HLServerError", "HLConnectionError", "HLRateLimitError"}
        assert (ok["output"] == "m: n" + ok["inputs.i"]).all()
        frame = retried_until_clean(frame)
        assert frame["error"].isna().all()
        assert frame["call"].tolist() == list(range(1000))
        assert frame["output"].tolist() == [f"m: n{i}" for i in range(1000)]
        # one log per ok row: faults before the endpoint stored nothing, retries did not double
        assert len(server.log_ids("reliability")) == 1000
    finally:
        server.stop()


# faults after the endpoint stored its log, mixed with faults before it; streams also get cut
AFTER_RATES = {False: "after_500=0.10,after_drop=0.05,500=0.05,429=0.05,drop=0.02",
               True: "after_500=0.05,after_drop=0.05,after_cut=0.05,500=0.05,429=0.05,cut=0.02"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_faults_after_the_log_is_stored_and_retry_log_each_call_once(point, tmp_path, stream):
    server = faulty_server(tmp_path, point, AFTER_RATES[stream], seed=7)
    try:
        HLSettings.instance().max_retries = 2
        frame = hl_notebook.sweep("user: n{{i}}", model="m", temperature=0, inputs=pd.DataFrame({"i": range(200)}),
                                  concurrency=8, project="after", stream=stream)
        failed = frame[frame["error"].notna()]
        assert 20 < len(failed) < 80  # ~20% of the calls failed, most of them after being logged
        assert {"HLServerError", "HLConnectionError"} <= set(failed["error_type"])
        frame = retried_until_clean(frame)
        assert frame["error"].isna().all(), frame.loc[frame["error"].notna(), "error"].tolist()[:3]
        assert frame["call"].tolist() == list(range(200))  # every call exactly once
        assert frame["output"].tolist() == [f"m: n{i}" for i in range(200)]
        stored = server.log_ids("after")
        assert len(stored) == 200  # a call that ran and was retried is not logged twice
        assert sorted(frame["log_id"]) == sorted(stored)  # each row shows the log its call stored
    finally:
        server.stop()


def test_read_timeout_of_a_call_that_ran_then_retry_logs_it_once(point, tmp_path):
    # after_slow: the endpoint runs and logs, then the answer is held back 1 s; the client gives up at 0.25 s
    server = faulty_server(tmp_path, point, "after_slow=0.5", seed=3)
    try:
        HLSettings.instance().read_timeout = 0.25
        frame = hl_notebook.sweep("user: t{{i}}", model="m", temperature=0, inputs=pd.DataFrame({"i": range(12)}),
                                  concurrency=4, project="timeouts")
        assert "HLTimeoutError" in set(frame["error_type"].dropna())
        frame = retried_until_clean(frame)
        assert frame["error"].isna().all(), frame.loc[frame["error"].notna(), "error"].tolist()[:3]
        assert frame["output"].tolist() == [f"m: t{i}" for i in range(12)]
        assert len(server.log_ids("timeouts")) == 12  # the timed-out calls were not run again
    finally:
        server.stop()


def test_stream_cut_midway_keeps_partial_output_and_error(point, tmp_path, shell, monkeypatch):
    server = ServerProcess(tmp_path / "cut.sqlite", extra_args=["--faults", "--fault-rates", "cut=1"]).start()
    try:
        monkeypatch.setenv("HUMANLOOP_BASE_URL", server.base_url)
        monkeypatch.setenv("HUMANLOOP_API_KEY", server.api_key)
        frame = shell.run_cell_magic("hlchat", "--model m --temperature 0 --stream --out cut",
                                     "user: one two three four five six seven")
        assert len(frame) == 1
        row = frame.iloc[0]
        assert row["error_type"] in ("HLStreamError", "HLConnectionError")
        assert row["output"] and "m: one two three four five six seven".startswith(row["output"])
        assert row["output"] != "m: one two three four five six seven"
        assert shell.user_ns["cut"] is not None
    finally:
        server.stop()
