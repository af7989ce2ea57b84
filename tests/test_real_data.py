"""Real notebook data through the whole path (magic in a real shell, server process): empty cells,
numpy and pandas values, odd option values, unusable history files, progress bars on request.
Each of these ended a run with an untyped error after calls had been made (issue 10)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests

import hl_notebook
from hl_notebook.config import HLSettings


def project_logs(server, name: str) -> int:
    projects = requests.get(server.base_url + "/projects", params={"size": 1000}, headers=server.headers,
                            timeout=10).json()["records"]
    found = [p for p in projects if p["name"] == name]
    if not found:
        return 0
    return requests.get(server.base_url + "/logs", params={"project_id": found[0]["id"], "size": 1},
                        headers=server.headers, timeout=10).json()["total"]


def test_an_empty_cell_in_row_97_costs_that_row_only(shell, server, capsys):
    rows = pd.DataFrame({"topic": [f"t{i}" for i in range(100)], "extra": np.arange(100, dtype=np.int64),
                         "unused": [np.nan] * 100})
    rows.loc[97, "topic"] = None  # pandas keeps it as NaN/None: either way an empty cell
    shell.user_ns["rows"] = rows
    frame = shell.run_cell_magic("hlchat", "--model m --temperature 0 --inputs rows --project real-data-97 --out df",
                                 "user: about {{topic}} ({{extra}})")
    assert len(frame) == 100 and shell.user_ns["df"] is frame
    assert frame["error"].notna().tolist() == [i == 97 for i in range(100)]
    assert frame.loc[97, "error_type"] == "HLUsageError" and "topic" in frame.loc[97, "error"]
    assert frame.loc[3, "output"] == "m: about t3 (3)"
    assert project_logs(server, "real-data-97") == 99  # nothing was sent for the empty row
    assert "99 ok, 1 failed (HLUsageError ×1)" in capsys.readouterr().err


def test_configs_frame_from_ragged_dicts_with_numpy_values(shell, server):
    shell.user_ns["cfgs"] = pd.DataFrame([{"model": "a", "temperature": np.float64(0.0)},
                                          {"model": "b", "max_tokens": np.int64(3), "seed": np.int64(1)}])
    shell.user_ns["meta"] = {"run": np.int64(2), "when": pd.Timestamp("2026-11-29"), "score": float("nan")}
    frame = shell.run_cell_magic("hlchat", "--configs cfgs --metadata meta --project real-data-cfg",
                                 "user: one two three four five")
    assert frame["model"].tolist() == ["a", "b"] and frame["error"].isna().all()
    assert frame.loc[1, "max_tokens"] == 3 and frame.loc[0, "max_tokens"] == -1  # not sent: the wire default


@pytest.mark.parametrize("line, message", [
    ("--model m --temperature nan", "--temperature: 'nan' is not a finite number"),
    ("--model m --top-p 7", "--top-p: '7' is out of range (0 to 1)"),
    ("--model m --out 1bad", "--out '1bad' is not a valid variable name"),
])
def test_bad_option_values_are_one_line_before_anything_is_sent(shell, capsys, line, message):
    result = shell.run_cell(f"%%hlchat {line}\nuser: hi")
    assert result.error_in_exec is not None
    err = capsys.readouterr()
    lines = [text for text in (err.out + err.err).splitlines() if text.strip()]
    assert lines == [f"HLUsageError: {message}"]


def test_an_unusable_history_file_warns_once_and_keeps_the_frame(shell, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    HLSettings.instance().history_path = str(blocker / "history.sqlite")  # its parent is a file
    first = shell.run_cell_magic("hlchat", "--model m --temperature 0", "user: a")
    second = shell.run_cell_magic("hlchat", "--model m --temperature 0", "user: b")
    assert first["output"].tolist() == ["m: a"] and second["output"].tolist() == ["m: b"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "history file" in line]
    assert len(warnings) == 1
    not_sqlite = tmp_path / "garbage.sqlite"
    not_sqlite.write_bytes(b"this is not a database" * 100)
    HLSettings.instance().history_path = str(not_sqlite)
    assert shell.run_cell_magic("hlchat", "--model m --temperature 0", "user: c")["output"].tolist() == ["m: c"]


def test_an_unusable_history_file_warns_with_the_cell_that_used_it(shell, tmp_path, capsys):
    """The warning is printed before the magic returns, so a notebook shows it under that cell,
    even while the history's thread is still busy with an earlier run (CI failed on this once)."""
    import threading

    from hl_notebook import archive

    archive.settle()
    capsys.readouterr()
    busy = threading.Event()
    with archive._lock:
        if archive._recorder is None:
            archive._start_recorder()
        held = archive._recorder.submit(busy.wait, 20)
    try:
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        HLSettings.instance().history_path = str(blocker / "history.sqlite")
        frame = shell.run_cell_magic("hlchat", "--model m --temperature 0", "user: a")
        warned = [line for line in capsys.readouterr().err.splitlines() if "history file" in line]
    finally:
        busy.set()
        held.result()
    assert frame["output"].tolist() == ["m: a"]
    assert len(warned) == 1 and str(blocker) in warned[0]


@pytest.mark.parametrize("setting, shown", [(False, False), (True, True), (None, False)])
def test_progress_setting_turns_bars_off_and_on(shell, capfd, setting, shown):
    shell.run_line_magic("config", f"HLSettings.progress = {setting}")
    shell.user_ns["twenty"] = [{"n": i} for i in range(20)]
    frame = shell.run_cell_magic("hlchat", "--model m --inputs twenty", "user: {{n}}")
    assert len(frame) == 20
    assert ("hlchat: 100%" in capfd.readouterr().err) is shown  # None: notebooks only, and this is a terminal


def test_python_api_progress_argument_overrides_the_setting(point, server, capfd):
    point(server)
    HLSettings.instance().progress = False
    hl_notebook.sweep("user: {{n}}", model="m", inputs=[{"n": 1}, {"n": 2}], progress=True)
    assert "hlchat: 100%" in capfd.readouterr().err


def test_mock_latency_setting_applies_to_the_running_embedded_server(ipython, monkeypatch):
    from hl_notebook import embedded

    monkeypatch.delenv("HUMANLOOP_BASE_URL", raising=False)
    HLSettings.instance().provider = ""
    HLSettings.instance().history_path = ""
    ipython.run_cell_magic("hlchat", "--model m --temperature 0", "user: first")  # starts (or reuses) it
    server, _ = embedded.shared(HLSettings.instance().mock_latency_ms)
    HLSettings.instance().mock_latency_ms = 5  # what %config HLSettings.mock_latency_ms = 5 sets
    frame = ipython.run_cell_magic("hlchat", "--model m --temperature 0", "user: second")
    assert frame["output"].tolist() == ["m: second"]
    assert server.mock_latency_ms == 5  # was silently ignored after the first call
    HLSettings.instance().mock_latency_ms = 0
    ipython.run_cell_magic("hlchat", "--model m --temperature 0", "user: third")
    assert server.mock_latency_ms == 0
