"""Sweeps under injected faults: a 1,000-request sweep loses nothing, retry() finishes it, and a
stream cut mid-way keeps its partial text with the error on its row."""
from __future__ import annotations

import pandas as pd

import hl_notebook
from hl_notebook.config import HLSettings
from support import ServerProcess


def test_thousand_requests_with_500s_429s_and_drops(point, tmp_path, capsys):
    server = point(ServerProcess(tmp_path / "faults.sqlite", extra_args=[
        "--faults", "--fault-rates", "500=0.10,429=0.05,drop=0.02", "--fault-seed", "11",
        "--fault-retry-after", "0"]).start())
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
        for _ in range(10):
            frame = hl_notebook.retry(frame, concurrency=16)
            if frame["error"].isna().all():
                break
        assert frame["error"].isna().all()
        assert frame["call"].tolist() == list(range(1000))
        assert frame["output"].tolist() == [f"m: n{i}" for i in range(1000)]
        project = [p for p in server.get("/projects").json()["records"] if p["name"] == "reliability"][0]
        logs = server.get("/logs", params={"project_id": project["id"], "size": 1}).json()
        assert logs["total"] == 1000  # one log per ok row: faults stored nothing, retries did not double
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
