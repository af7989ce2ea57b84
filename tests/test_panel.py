"""The widget panel driven from Python (set .value, .click()) against the real server process."""
from __future__ import annotations

import html
import re
import threading
import uuid

import ipywidgets as w
import pandas as pd
import pytest

from hl_notebook.frame import VOLATILE_COLUMNS
from hl_notebook.widget import ChatPanel
from support import SERVED_PROVIDERS


@pytest.fixture
def panel(shell):
    made = ChatPanel(shell=shell)
    made._providers_thread.join(30)
    return made


def run(panel: ChatPanel) -> None:
    panel._run.click()
    panel.wait(60)
    assert not panel._thread.is_alive()


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in VOLATILE_COLUMNS + ["call", "run"] if c in frame]).reset_index(drop=True)


def widgets(root):
    yield root
    for child in getattr(root, "children", ()):
        yield from widgets(child)


def shown(widget) -> bool:
    return widget.layout.display != "none"


def status(panel: ChatPanel) -> str:
    """The status line as the user reads it (markup removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", panel._status.value))


def tone(panel: ChatPanel) -> str:
    found = re.search(r'class="hl-status hl-(\w+)"', panel._status.value)
    return found.group(1) if found else ""


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
    assert "2 ok, 0 failed" in status(panel)  # calls, not rows
    assert "<table" in panel._table.value and "m1: about tea" in panel._table.value
    assert "&lt;NA&gt;" not in panel._table.value and "<NA>" not in panel._table.value


def test_endpoint_selector_shows_the_matching_fields(panel):
    assert panel._selector_box.children == (panel._chat_box,)
    panel._endpoint.value = "model-config"
    assert {panel._config_picker, panel._refresh} <= set(widgets(panel._selector_box))
    panel._endpoint.value = "experiment"
    inside = set(widgets(panel._selector_box))
    assert {panel._experiment_picker, panel._refresh, panel._experiment_configs, panel._create_experiment} <= inside
    panel._endpoint.value = "deployed"
    inside = set(widgets(panel._selector_box))
    assert {panel._environment, panel._deploy_target, panel._deploy, panel._refresh} <= inside
    assert panel._chat_box not in inside


def test_comparison_runs_configs_times_samples_and_results_accumulate(panel):
    panel._messages.value = "user: compare"
    panel._model.value, panel._temperature.value = "a", 0.0
    panel._add.click()
    panel._model.value = "b"
    panel._add.click()
    panel._add.click()  # the same config twice is listed once
    assert len(panel.state.comparison) == 2 and len(panel._compare_list.children) == 2
    assert panel._run.description == "Run 2 configs"
    assert "/chat · a" in str(panel._compare_list.children[0].children[1].value)
    panel._samples.value = 2
    run(panel)
    assert panel.result["model"].tolist() == ["a", "a", "b", "b"]
    run(panel)
    assert len(panel.result) == 8  # the table accumulates across runs
    assert panel.result["run"].tolist() == [1] * 4 + [2] * 4
    panel._compare_list.children[0].children[0].click()  # remove "a" only
    assert [e["model"] for e in panel.state.comparison] == ["b"] and panel._run.description == "Run 1 config"
    panel._clear.click()
    assert panel.state.comparison == [] and panel._run.description == "Run"


def test_configs_experiments_and_deployments_without_code(shell, panel):
    project = f"panel-ui-{uuid.uuid4().hex[:8]}"
    panel._project.value, panel._messages.value = project, "user: hi"
    for model, temperature in (("reg-a", 0.0), ("reg-b", 0.0)):
        panel._model.value, panel._temperature.value = model, temperature
        panel._register.click()
    assert "registered config reg-b" in status(panel)
    panel._endpoint.value = "model-config"
    assert [text for text, _ in panel._config_picker.options] == ["reg-a", "reg-b"]  # labels, not ids
    panel._config_picker.value = panel._config_picker.options[1][1]
    run(panel)
    assert panel.result["output"].tolist() == ["reg-b: hi"]
    panel._endpoint.value = "experiment"
    panel._refresh.click()
    assert "2 configs, 0 experiments" in status(panel)
    panel._experiment_configs.value = tuple(ident for _, ident in panel._config_picker.options)
    panel._experiment_name.value = "a-vs-b"
    panel._create_experiment.click()
    assert "created experiment a-vs-b" in status(panel)
    assert panel._experiment_picker.label.startswith("a-vs-b (2 configs: reg-a / reg-b)")
    panel._samples.value = 20
    run(panel)
    assert len(panel.result) == 21, status(panel)
    assert set(panel.result["model"].iloc[1:]) == {"reg-a", "reg-b"}
    panel._endpoint.value, panel._samples.value = "deployed", 1
    panel._deploy_target.value = next(v for text, v in panel._deploy_target.options if text == "config reg-b")
    panel._deploy.click()
    assert "deployed config reg-b to the default environment" in status(panel)
    run(panel)
    assert panel.result["model"].tolist()[-1] == "reg-b"


def test_deployed_with_a_blank_project_uses_the_default_project(shell, panel):
    panel._messages.value = "user: first"
    run(panel)  # /chat with no project logs under the default project, and deploys its first config there
    panel._endpoint.value = "deployed"
    run(panel)
    assert tone(panel) == "ok" and panel.result["endpoint"].tolist()[-1] == "deployed", status(panel)


def test_errors_are_in_the_panels_words(shell, panel):
    panel._messages.value = "usr:\nhi"
    panel._run.click()
    assert panel._thread is None
    assert "Messages, line 1: unknown role 'usr'; did you mean user?" in status(panel)
    panel._messages.value = "user: about {{topic}}"
    panel._run.click()
    assert "define `topic` in the notebook or set Inputs" in status(panel)
    assert "--inputs" not in status(panel) and "Error" not in status(panel) and tone(panel) == "error"
    panel._endpoint.value = "model-config"
    panel._messages.value = "user: hi"
    panel._config_picker.options = [("gone", "config_doesnotexist000000")]
    panel._config_picker.value = "config_doesnotexist000000"
    run(panel)
    assert "POST /chat-model-config returned 404" in status(panel) and "HLNotFoundError" not in status(panel)
    panel._inputs.value = "nowhere"
    panel._run.click()
    assert "Inputs: 'nowhere' is not defined" in status(panel)


def test_out_of_range_values_are_shown_beside_the_control_never_clamped(panel):
    panel._temperature.value = 3.0
    assert panel._temperature.value == 3.0
    assert "Temperature: 3.0 is out of range (0 to 2)" in panel._hints["temperature"].value
    panel._messages.value = "user: hi"
    panel._run.click()
    assert "Temperature: 3.0 is out of range (0 to 2)" in status(panel) and panel._thread is None
    panel._temperature.value = 1.0
    assert panel._hints["temperature"].value == ""
    panel._max_tokens.value = "-1"
    assert panel._max_tokens.value == "" and panel._max_tokens.placeholder == "no limit"


def test_labels_title_providers_and_save_hidden_until_results(shell, panel):
    assert panel._stop.description == "Stop sequence" and panel._stop_button.description == "Stop"
    assert "Chat panel" in panel._title.value
    assert [text for text, _ in panel._provider.options] == list(SERVED_PROVIDERS)
    assert panel._provider.value == "mock"
    assert not shown(panel._save_box) and not shown(panel._tabs)
    assert all(box.layout.flex_flow == "row wrap" for box in widgets(panel) if isinstance(box, w.HBox))
    panel._messages.value = "user: hi"
    run(panel)
    assert shown(panel._save_box) and shown(panel._tabs)
    assert [panel._tabs.get_title(i) for i in range(3)] == ["Rows", "Compare", "Summary"]
    assert "demo-model: hi" in panel._compare_view.value and "latency_p50_s" in panel._summary_view.value
    run(panel)  # a second run: its calls count as calls of their own in the summary
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", panel._summary_view.value)
    assert cells[:3] == ["demo-model", "2", "2"], cells  # model, calls, samples


def test_progress_rows_and_failed_rows_while_and_after_a_slow_sweep(shell, tmp_path, monkeypatch, point):
    from support import ServerProcess

    slow = point(ServerProcess(tmp_path / "slow.sqlite", extra_args=["--mock-latency-ms", "150"]).start())
    try:
        panel = ChatPanel(shell=shell)
        shell.user_ns["many"] = [{"n": i} for i in range(12)]
        panel._messages.value, panel._inputs.value, panel._concurrency.value = "user: {{n}}", "many", 2
        seen: list[tuple[str, int]] = []
        panel._progress_text.observe(lambda change: seen.append((change["new"], panel._table.value.count("<tr"))),
                                     names="value")
        run(panel)
        progress = [re.search(r"(\d+) / 12", text) for text, _ in seen]
        assert [int(m.group(1)) for m in progress if m][-1] == 12
        assert any(m and 0 < int(m.group(1)) < 12 and "ETA" in text for m, (text, _) in zip(progress, seen))
        assert any(0 < rows - 1 < 12 for _, rows in seen), seen  # rows were in the table before the end
        assert panel._table.value.count("<tr") == 13
        # a comparison where one entry fails: the failed rows get a badge and a filter
        panel._inputs.value = ""
        panel._messages.value = "user: ok"
        panel._add.click()
        panel.state.comparison.append({"endpoint": "model-config", "model_config_id": "config_doesnotexist000000"})
        run(panel)
        assert "1 failed" in status(panel) and tone(panel) == "error"
        assert panel._failed_toggle.description == "1 failed — show" and shown(panel._failed_toggle)
        panel._failed_toggle.click()
        assert panel._table.value.count("<tr") == 2 and "returned 404" in panel._table.value
        assert panel._failed_toggle.description == "1 failed — show all"
        panel._clear_results.click()
        assert panel._table.value == "" and not shown(panel._progress_box) and panel._progress.value == 0
        assert not shown(panel._failed_toggle) and not shown(panel._save_box)
    finally:
        slow.stop()


def test_stop_keeps_finished_rows_and_is_not_an_error(shell, tmp_path, point):
    from support import ServerProcess

    slow = point(ServerProcess(tmp_path / "slow.sqlite", extra_args=["--mock-latency-ms", "100"]).start())
    try:
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
        assert "cancelled (stopped)" in status(panel) and tone(panel) == "ok"
        assert not panel._run.disabled and panel._stop_button.disabled
        # a validation error after a run hides the stale progress bar
        assert shown(panel._progress_box)
        panel._messages.value = "usr:\nx"
        panel._run.click()
        assert not shown(panel._progress_box) and tone(panel) == "error"
    finally:
        slow.stop()


def test_set_and_run_from_code(shell, panel):
    shell.user_ns["two"] = [{"x": "a"}, {"x": "b"}]
    result = panel.set(messages="user: {{x}}", inputs="two", temperature=0.0, num_samples=1).run()
    assert result["output"].tolist() == ["demo-model: a", "demo-model: b"]
    from hl_notebook.errors import HLUsageError
    with pytest.raises(HLUsageError, match="no control named 'table'"):
        panel.set(table="x")


def test_load_from_a_variable_and_from_the_last_hlchat_cell(shell, panel):
    shell.user_ns["saved_prompt"] = "system: s\nuser: from a variable"
    panel._load_name.value = "saved_prompt"
    panel._load.click()
    assert panel._messages.value == "system: s\nuser: from a variable"
    panel._load_name.value = ""
    shell.run_cell("%%hlchat --model m --provider mock\nsystem: terse\nuser: from the cell", store_history=True)
    shell.run_cell("x = 1", store_history=True)
    panel._load.click()
    assert panel._messages.value == "system: terse\nuser: from the cell", status(panel)
    assert "loaded the messages of the last %%hlchat cell" in status(panel)


def test_streaming_shows_each_sample(shell, panel):
    panel._messages.value, panel._temperature.value = "user: stream me", 0
    panel._stream.value, panel._samples.value = True, 2
    run(panel)
    assert shown(panel._streams)
    assert panel._streams.value.count('class="hl-stream"') == 2
    assert "<b>sample 0</b>" in panel._streams.value and "<b>sample 1</b>" in panel._streams.value
    assert panel._streams.value.count("demo-model: stream me") == 2


def test_save_as(shell, panel):
    panel._messages.value = "user: keep"
    run(panel)
    panel._save_name.value = "panel_rows"
    panel._save.click()
    assert shell.user_ns["panel_rows"] is panel.result
    panel._save_name.value = "not valid"
    panel._save.click()
    assert "not a valid variable name" in status(panel)


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



def test_inputs_without_rows_and_a_zero_concurrency_are_refused_before_a_run(shell, panel):
    """Both started a run that did nothing: "run 1: 0 ok, 0 failed" for a filter that matched no
    rows, and "run 2: Concurrency must be at least 1" (a run counted, a stale progress bar)."""
    shell.user_ns["none"] = []
    panel._messages.value, panel._model.value, panel._inputs.value = "user: about {{topic}}", "m", "none"
    panel._run.click()  # refused at once: no run, no thread
    assert status(panel) == "Inputs has no rows; nothing was sent" and tone(panel) == "error"
    panel._inputs.value, panel._concurrency.value = "", 0
    shell.user_ns["topic"] = "tea"
    panel._run.click()  # refused at once: no run, no thread
    assert status(panel) == "Concurrency must be at least 1" and panel.state.runs == 0
