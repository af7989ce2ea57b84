"""The panel's decisions without widgets: PanelState, its pure functions, the HTML it renders.

Why: the view only shows what these decide (labels, validation, what applies to an endpoint, what
Run will do, progress and status wording, the failed-rows filter), so each is tested here directly.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from hl_notebook.call import CallResult
from hl_notebook.errors import CellSyntaxError, HLCancelled, HLNotFoundError, HLUsageError, MissingInputError
from hl_notebook.pool import Run
from hl_notebook.spec import PARAMETERS, ChatSpec
from hl_notebook.widget import render
from hl_notebook.widget.state import (LiveRun, PanelState, comparison_labels, distinct_labels, duration, explain,
                                      failed_badge, label, last_hlchat_cell, load_messages, outcome, parameter_problem,
                                      progress_text, provider_choices, shown_value, with_run)

WIDGET_DIR = Path(__file__).resolve().parents[1] / "hl_notebook" / "widget"


def test_state_render_and_registry_hold_no_widgets():
    for name in ("state.py", "render.py", "registry.py"):
        tree = ast.parse((WIDGET_DIR / name).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not [m for m in imported if "ipywidgets" in m], (name, imported)


# -- Load (issue 14.1) ---------------------------------------------------------------------------------
def test_last_hlchat_cell_reads_the_raw_history():
    history = ["%load_ext hl_notebook", "%%hlchat --model a\nuser: first", "x = 1",
               "%%hlchat --model b -n 2\nsystem: s\nuser: second {{topic}}", "%%hlchat_judge df\nuser: judge",
               "get_ipython().run_cell_magic('hlchat', '--model c', 'user: transformed')"]
    assert last_hlchat_cell(history) == "system: s\nuser: second {{topic}}"
    assert last_hlchat_cell(["  %%hlchat\nuser: indented"]) == "user: indented"
    assert last_hlchat_cell(["%%hlchat --model m"]) == ""
    assert last_hlchat_cell(["x = 1", "%%hlchat_judge df\nuser: j"]) is None


def test_load_messages_from_a_variable_or_the_last_cell():
    namespace = {"prompt": "user: hi", "chat": [{"role": "user", "content": "x"}]}
    assert load_messages(" prompt ", namespace, []) == ("user: hi", "loaded the messages from prompt")
    text, _ = load_messages("chat", namespace, [])
    assert json.loads(text) == namespace["chat"]
    assert load_messages("", namespace, ["%%hlchat\nuser: cell"]) == \
        ("user: cell", "loaded the messages of the last %%hlchat cell")
    with pytest.raises(HLUsageError, match="^Load from: 'nope' is not defined in the notebook$"):
        load_messages("nope", namespace, [])
    with pytest.raises(HLUsageError, match="no %%hlchat cell has run yet"):
        load_messages("", namespace, ["x = 1"])


def test_save_as_checks_the_name_and_that_there_are_rows():
    state, namespace = PanelState(), {}
    with pytest.raises(HLUsageError, match="^Save as: 'not valid' is not a valid variable name$"):
        state.save_as("not valid", namespace)
    with pytest.raises(HLUsageError, match="nothing to save yet"):
        state.save_as("rows", namespace)
    state.add_rows(pd.DataFrame({"run": [1], "error": [None]}))
    assert state.save_as(" rows ", namespace) == "saved 1 rows as rows" and namespace["rows"] is state.result


# -- wording (14.5, 14.9, 14.11) --------------------------------------------------------------------------
def test_errors_speak_the_panels_language():
    missing = explain(MissingInputError(["topic"]))
    assert missing == "no value for `topic`: define `topic` in the notebook or set Inputs"
    assert explain(CellSyntaxError("unknown role 'usr'; did you mean user?", 1)) == \
        "Messages, line 1: unknown role 'usr'; did you mean user?"
    empty = explain(CellSyntaxError("the cell has no messages: write 'user:' and your prompt below the magic line"))
    assert empty == "Messages: no messages: write 'user:' and your prompt in Messages"
    assert explain(HLUsageError("--top-p: 3 is out of range (0 to 1); --num-samples must be at least 1")) == \
        "Top p: 3 is out of range (0 to 1); Samples must be at least 1"
    assert explain(HLUsageError("--model-config-id: 'x' is not defined")) == "Config: 'x' is not defined"


def test_state_specs_errors_are_in_panel_wording():
    state = PanelState(messages_text="user: about {{topic}}")
    with pytest.raises(HLUsageError) as caught:
        state.specs({})
    text = str(caught.value)
    assert "define `topic` in the notebook or set Inputs" in text
    assert "--inputs" not in text and "magic" not in text and "MissingInputError" not in text
    state.messages_text = "user: hi"
    state.num_samples = 0
    with pytest.raises(HLUsageError, match="^Samples must be at least 1$"):
        state.specs({})


def test_labels_and_sections():
    assert label("stop") == "Stop sequence" and label("top_p") == "Top p" and label("num_samples") == "Samples"
    assert len({label(p.name) for p in PARAMETERS}) == len(PARAMETERS)
    state = PanelState()
    assert state.sections() == ("parameters",)
    state.endpoint = "experiment"
    assert state.sections() == ("experiment", "new_experiment")
    state.endpoint = "deployed"
    assert state.sections() == ("environment", "deploy")


def test_values_out_of_range_are_reported_never_clamped():
    assert parameter_problem("temperature", 3.0) == "Temperature: 3.0 is out of range (0 to 2)"
    assert parameter_problem("temperature", 2.0) == ""
    assert parameter_problem("max_tokens", "-5") == "Max tokens: '-5' is out of range (at least -1)"
    assert parameter_problem("seed", "1.5") == "Seed: '1.5' is not a valid int"
    assert parameter_problem("seed", "") == ""
    state = PanelState()
    state.parameters["temperature"] = 3.0
    assert state.problems() == {"temperature": "Temperature: 3.0 is out of range (0 to 2)"}
    with pytest.raises(HLUsageError, match=r"^Temperature: 3.0 is out of range \(0 to 2\)$"):
        state.specs({})
    assert state.parameters["temperature"] == 3.0


def test_max_tokens_minus_one_shows_no_limit():
    assert shown_value("max_tokens", -1) == "" and shown_value("max_tokens", " -1 ") == ""
    assert shown_value("max_tokens", 20) == "20" and shown_value("seed", None) == ""
    assert shown_value("temperature", 0.5) == 0.5
    state = PanelState()
    state.parameters["max_tokens"] = "-1"
    assert "max_tokens" not in state.current_config()


def test_provider_choices_come_from_server_info_else_the_wire_list():
    assert provider_choices({"providers": ["mock", "openai", "anthropic"], "version": "1"}) == \
        ("mock", "openai", "anthropic")
    full = next(p for p in PARAMETERS if p.name == "provider").choices
    assert provider_choices(None) == full and provider_choices({"detail": "Not Found"}) == full
    assert provider_choices({"providers": []}) == full


# -- project and Run ----------------------------------------------------------------------------------
def test_blank_project_is_the_default_project_for_deployed(monkeypatch):
    from hl_notebook.config import HLSettings

    state = PanelState(endpoint="deployed", messages_text="user: hi")
    assert state.project_name() == "default"
    [spec] = state.specs({})
    assert spec.endpoint == "deployed" and spec.project == "default"
    HLSettings.instance().project = "team"
    assert state.project_name() == "team" and state.specs({})[0].project == "team"
    state.project = " mine "
    assert state.specs({})[0].project == "mine"


def test_run_label_and_comparison_entries():
    state = PanelState(messages_text="user: hi")
    assert state.run_label() == "Run"
    state.parameters.update(model="a", temperature=0.0)
    state.add_to_comparison()
    assert state.run_label() == "Run 1 config"
    state.parameters["model"] = "b"
    state.add_to_comparison()
    state.parameters["temperature"] = 0.7
    assert state.add_to_comparison() == "comparing 3: Run 3 configs sweeps them all"
    assert state.run_label() == "Run 3 configs"
    assert len(state.specs({})) == 3
    assert comparison_labels(state.comparison) == ["/chat · a · temperature 0", "/chat · b · temperature 0",
                                                   "/chat · b · temperature 0.7"]
    assert state.remove_from_comparison(1) == "comparing 2: Run 2 configs sweeps them all"
    assert [e["model"] for e in state.comparison] == ["a", "b"] and state.run_label() == "Run 2 configs"
    entries = [{"endpoint": "model-config", "model_config_id": "config_abc"},
               {"endpoint": "experiment", "experiment_id": "exp_1"}, {"endpoint": "deployed"}]
    assert comparison_labels(entries, {"config_abc": "m1 · temperature 0"}, {"exp_1": "ab"}) == \
        ["config m1 · temperature 0", "experiment ab", "deployed · default environment"]
    assert state.remove_from_comparison() == "no comparison: Run calls what the controls show"
    assert state.comparison == [] and state.run_label() == "Run"


def test_distinct_labels_name_or_model_and_differing_parameters():
    rows = [{"config_id": "config_aaaaaa111111", "name": "m1-111111", "model": "m1", "provider": "mock",
             "temperature": 0.0, "top_p": float("nan")},
            {"config_id": "config_bbbbbb222222", "name": "m1-222222", "model": "m1", "provider": "mock",
             "temperature": 0.7, "top_p": None},
            {"config_id": "config_cccccc333333", "name": "baseline", "model": "m2", "provider": "mock",
             "temperature": 0.0},
            {"config_id": "config_dddddd444444", "name": None, "model": "m1", "provider": "mock", "temperature": 0.0}]
    assert distinct_labels(rows) == ["m1 · temperature 0 (111111)", "m1 · temperature 0.7", "baseline",
                                     "m1 · temperature 0 (444444)"]
    assert not [text for text in distinct_labels(rows) if "config_" in text]


# -- progress, outcome, rows ---------------------------------------------------------------------------
def test_progress_text_and_durations():
    assert progress_text(0, 10, 0.0) == "0 / 10 · 0.0 s"
    assert progress_text(3, 10, 1.5) == "3 / 10 · 1.5 s · ETA 3.5 s"
    assert progress_text(10, 10, 4.0) == "10 / 10 · 4.0 s"
    assert duration(65) == "1 min 05 s"


def spec(n: int = 0) -> ChatSpec:
    return ChatSpec(endpoint="chat", messages=({"role": "user", "content": f"hi {n}"},),
                    model_config={"model": "m", "provider": "mock"}, inputs={"n": n})


def ok(call: int, samples: int = 1) -> CallResult:
    data = [{"index": i, "output": f"out {call}.{i}", "finish_reason": "stop", "model_config_id": None}
            for i in range(samples)]
    return CallResult(call, spec(call), {"data": data, "usage": {"total_tokens": 3}}, latency_s=0.1)


def failed(call: int, error=None) -> CallResult:
    return CallResult(call, spec(call), error=error or HLNotFoundError("POST /chat returned 404: gone",
                                                                       status_code=404, endpoint="/chat"))


def test_outcome_after_stop_is_not_an_error_and_failures_are():
    cancelled = HLCancelled("cancelled before it finished (interrupted); retry(df) runs it")
    stopped = Run([ok(0), ok(1), failed(2, cancelled)], 3, interrupted=True)
    text, tone = outcome(stopped, 4, True, 2.0)
    assert (text, tone) == ("run 4: 2 ok, 0 failed, 1 cancelled (stopped) · 2.0 s", "ok")
    text, tone = outcome(Run([ok(0), failed(1)], 2), 1, False, 1.0)
    assert (text, tone) == ("run 1: 1 ok, 1 failed · 1.0 s", "error")
    text, tone = outcome(Run([failed(0)], 1), 2, False, 1.0)
    assert (text, tone) == ("run 2: POST /chat returned 404: gone", "error")  # no class name
    assert failed_badge(3, False) == "3 failed — show" and failed_badge(3, True) == "3 failed — show all"
    assert failed_badge(0, False) == ""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_run_tracks_progress_rows_and_streams():
    clock = Clock()
    live = LiveRun(4, 2, clock=clock, redraw_every=0.25)
    assert live.due() and not live.due()
    clock.now += 1.0
    live.record(ok(1))
    assert live.progress() == "1 / 4 · 1.0 s · ETA 3.0 s"
    assert live.due()
    frame = live.frame()
    assert frame["run"].tolist() == [2] and frame["call"].tolist() == [1]
    live.delta(0, 0, "hel")
    live.delta(0, 1, "wor")
    live.delta(0, 0, "lo")
    assert live.stream_sections() == [("sample 0", "hello"), ("sample 1", "wor")]
    live.delta(1, 0, "x")
    assert [caption for caption, _ in live.stream_sections()] == ["call 0 · sample 0", "call 0 · sample 1",
                                                                   "call 1 · sample 0"]
    live.finish()
    clock.now += 5.0
    live.finish()
    assert live.elapsed == 1.0  # stops when the run ends, for the progress text and the status alike
    single = LiveRun(1, 1, clock=clock)
    single.delta(0, 0, "only")
    assert single.stream_sections() == [("", "only")]


def test_rows_accumulate_with_run_numbers_and_filter_failed():
    from hl_notebook.frame import to_frame

    state = PanelState()
    assert state.rows() is None and not state.can_save
    live = state.start_run(2)
    state.add_rows(with_run(to_frame([ok(0), failed(1)]), live.number))
    live = state.start_run(1)
    running = with_run(to_frame([ok(0)]), live.number)
    assert state.rows(running)["run"].tolist() == [2, 1, 1]  # the newest run on top
    assert state.rows(running)["call"].tolist() == [0, 0, 1]
    assert state.failed_rows(running) == 1
    state.failed_only = True
    assert state.rows(running)["call"].tolist() == [1]
    assert len(state.rows(running, filtered=False)) == 3
    state.add_rows(running)
    assert state.can_save and state.result["run"].tolist() == [1, 1, 2]  # the frame keeps the declared order
    assert state.result["call"].tolist() == [0, 1, 0]
    assert state.analysis_frame()["call"].tolist() == [0, 1, 2]  # one number per call across runs
    state.clear_results()
    assert state.result is None and not state.failed_only


# -- render: theme colours, alignment ------------------------------------------------------------------
LITERAL_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}\b|\brgba?\(|\bhsla?\(|:\s*(white|black|grey|gray|red)\b")


def test_rendered_html_uses_only_theme_variables():
    from hl_notebook.frame import to_frame

    frame = with_run(to_frame([ok(0), failed(1)]), 1)
    for text in (render.STYLE, render.status_html("x", "error"), render.status_html("x", "ok"),
                 render.table_html(frame), render.hint_html("bad"), render.stream_html([("a", "b")]),
                 render.title_html("t", "s"), render.frame_html(frame[["call", "output"]])):
        assert not LITERAL_COLOUR.search(text), LITERAL_COLOUR.search(text)
    declared = re.findall(r"([\w-]+):([^;}]+)", render.STYLE)
    colours = [value for prop, value in declared if prop in ("color", "background", "border-left-color")
               or (prop.startswith("border") and "solid" in value)]
    assert len(colours) > 10
    assert all("var(--jp-" in value or value.endswith("transparent") for value in colours), colours


def test_table_keeps_header_and_cell_alignment_and_error_next_to_output():
    from hl_notebook.frame import to_frame

    html = render.table_html(with_run(to_frame([ok(0), failed(1)]), 1))
    headers = re.findall(r"<th( class=\"hl-num\")?>([^<]+)</th>", html)
    names = [name for _, name in headers]
    assert names[names.index("output") + 1] == "error"
    assert names[0] == "run"
    first_row = re.search(r"<tbody><tr[^>]*>(.*?)</tr>", html).group(1)
    cells = re.findall(r"<td( class=\"hl-\w+\")?>", first_row)
    assert [bool(a) for a, _ in headers] == [c == ' class="hl-num"' for c in cells]
    assert "text-align: right" not in html and "&lt;NA&gt;" not in html and "nan" not in html.lower().split("hl-")[0]
    assert "hl-failed" in html and "gone" in html
    assert render.table_html(None) == "" and render.status_html("") == ""


def test_table_shows_the_token_column_by_either_name():
    frame = pd.DataFrame({"call": [0], "output": ["x"], "error": [None], "total_tokens": [7]})
    assert "<td class=\"hl-num\">7</td>" in render.table_html(frame)
    frame = frame.rename(columns={"total_tokens": "call_total_tokens"})
    assert "<td class=\"hl-num\">7</td>" in render.table_html(frame)
