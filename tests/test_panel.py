"""The widget panel driven from Python (set .value, .click()) against the real server process."""
from __future__ import annotations

import threading

import ipywidgets as w
import pandas as pd
import pytest
import requests

from hl_notebook.frame import VOLATILE_COLUMNS
from hl_notebook.widget import ChatPanel


@pytest.fixture
def panel(shell):
    return ChatPanel(shell=shell)


def run(panel: ChatPanel) -> None:
    panel._run.click()
    panel.wait(60)
    assert not panel._thread.is_alive()


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=VOLATILE_COLUMNS + ["call"]).reset_index(drop=True)


def test_panel_frame_equals_the_magic_frame_for_the_same_inputs(shell, panel):
    shell.user_ns["rows"] = [{"topic": "tea"}, {"topic": "coffee"}]
    magic = shell.run_cell_magic(
        "hlchat", "--model m1 --provider mock --temperature 0.5 --top-p 1 --presence-penalty 0 "
                  "--frequency-penalty 0 --max-tokens 20 --stop zz -n 2 --inputs rows --project panel-eq",
        "system: be brief\nuser: about {{topic}}")
    panel._messages.value = "system: be brief\nuser: about {{topic}}"
    panel._model.value, panel._provider.value, panel._temperature.value = "m1", "mock", 0.5
    panel._max_tokens.value, panel._stop.value, panel._samples.value = "20", "zz", 2
    panel._inputs.value, panel._project.value = "rows", "panel-eq"
    run(panel)
    assert len(panel.result) == 4
    pd.testing.assert_frame_equal(stable(panel.result), stable(magic))
    assert "2 ok, 0 failed" in panel._status.value  # calls, not rows
    assert "<table" in panel._table.value and "m1: about tea" in panel._table.value
    assert "&lt;NA&gt;" not in panel._table.value and "<NA>" not in panel._table.value


def test_endpoint_selector_shows_the_matching_fields(panel):
    assert panel._selector_box.children == (panel._chat_box,)
    for key, box in [("model-config", panel._config_box), ("experiment", panel._experiment_box),
                     ("deployed", panel._deployed_box), ("chat", panel._chat_box)]:
        panel._endpoint.value = key
        assert panel._selector_box.children == (box,)


def test_comparison_runs_configs_times_samples_and_results_accumulate(panel):
    panel._messages.value = "user: compare"
    panel._model.value, panel._temperature.value = "a", 0.0
    panel._add.click()
    panel._model.value = "b"
    panel._add.click()
    panel._add.click()  # the same config twice is listed once
    assert len(panel.state.comparison) == 2 and "Comparing 2" in panel._compare_list.value
    panel._samples.value = 2
    run(panel)
    assert panel.result["model"].tolist() == ["a", "a", "b", "b"]
    run(panel)
    assert len(panel.result) == 8  # the table accumulates across runs
    panel._clear.click()
    assert panel.state.comparison == []


def test_registered_configs_experiments_and_deployments(shell, panel, server):
    first = server.post("/model-configs", {"project": "panel-reg", "model": "reg-a", "provider": "mock",
                                           "temperature": 0}).json()
    second = server.post("/model-configs", {"project": "panel-reg", "model": "reg-b", "provider": "mock",
                                            "temperature": 0}).json()
    project_id = first["project_id"]
    server.post(f"/projects/{project_id}/experiments", {"name": "ab", "positive_labels": [{"type": "t", "value": "v"}],
                                                        "config_ids": [first["config"]["id"], second["config"]["id"]]})
    panel._project.value = "panel-reg"
    panel._messages.value = "user: hi"
    panel._refresh.click()
    assert "2 configs, 1 experiments" in panel._status.value
    panel._endpoint.value = "model-config"
    panel._config_picker.value = second["config"]["id"]
    run(panel)
    assert panel.result["output"].tolist() == ["reg-b: hi"]
    panel._endpoint.value = "experiment"
    panel._samples.value = 20
    run(panel)
    assert len(panel.result) == 21, panel._status.value
    assert set(panel.result["model"].iloc[1:]) == {"reg-a", "reg-b"}
    panel._endpoint.value, panel._samples.value = "deployed", 1
    run(panel)
    assert panel.result["model"].tolist()[-1] == "reg-a"


def test_errors_show_the_magics_one_line(shell, panel, capsys):
    panel._messages.value = "usr:\nhi"
    panel._run.click()
    assert panel._thread is None
    assert "CellSyntaxError: line 1: unknown role &#x27;usr&#x27;; did you mean user?" in panel._status.value
    panel._messages.value = "user: hi"
    panel._provider.value = "cohere"
    run(panel)
    assert "HLValidationError: POST /chat returned 422" in panel._status.value
    panel._inputs.value = "nowhere"
    panel._run.click()
    assert "inputs variable &#x27;nowhere&#x27; is not defined" in panel._status.value


def test_stop_keeps_finished_rows(shell, tmp_path, monkeypatch):
    from support import ServerProcess

    slow = ServerProcess(tmp_path / "slow.sqlite", extra_args=["--mock-latency-ms", "100"]).start()
    try:
        monkeypatch.setenv("HUMANLOOP_BASE_URL", slow.base_url)
        monkeypatch.setenv("HUMANLOOP_API_KEY", slow.api_key)
        panel = ChatPanel(shell=shell)
        shell.user_ns["many"] = [{"n": i} for i in range(60)]
        panel._messages.value, panel._inputs.value, panel._concurrency.value = "user: {{n}}", "many", 2
        started = threading.Event()
        panel._progress.observe(lambda change: change["new"] >= 4 and started.set(), names="value")
        panel._run.click()
        assert started.wait(30)
        panel._stop_button.click()
        panel.wait(30)
        done = panel.result[panel.result["error"].isna()]
        assert 4 <= len(done) < 60 and len(panel.result) == 60  # cancelled calls are rows too
        assert set(panel.result["error_type"].dropna()) == {"HLCancelled"}
        assert "cancelled" in panel._status.value
        assert not panel._run.disabled and panel._stop_button.disabled
        _ = requests
    finally:
        slow.stop()


def test_set_and_run_from_code(shell, panel):
    shell.user_ns["two"] = [{"x": "a"}, {"x": "b"}]
    result = panel.set(messages="user: {{x}}", inputs="two", temperature=0.0, num_samples=1).run()
    assert result["output"].tolist() == ["demo-model: a", "demo-model: b"]
    from hl_notebook.errors import HLUsageError
    with pytest.raises(HLUsageError, match="no control named 'table'"):
        panel.set(table="x")


def test_save_as_load_and_streaming(shell, panel):
    shell.user_ns["saved_prompt"] = "system: s\nuser: from a variable"
    panel._load_name.value = "saved_prompt"
    panel._load.click()
    assert panel._messages.value == "system: s\nuser: from a variable"
    panel._stream.value = True
    panel._temperature.value = 0
    run(panel)
    assert panel._stream_area.value == "demo-model: from a variable"
    assert panel._stream_area.layout.display == "block"
    panel._save_name.value = "panel_rows"
    panel._save.click()
    assert shell.user_ns["panel_rows"] is panel.result
    panel._save_name.value = "not valid"
    panel._save.click()
    assert "not a valid variable name" in panel._status.value


def test_no_widget_shows_a_key(shell, panel, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-CANARY-panel-0001")
    panel._messages.value = "user: hi"
    run(panel)

    def values(widget):
        yield str(getattr(widget, "value", ""))
        yield str(getattr(widget, "description", ""))
        for child in getattr(widget, "children", ()):
            yield from values(child)

    assert not [v for v in values(panel) if "CANARY" in v]
    assert isinstance(panel, w.VBox)
