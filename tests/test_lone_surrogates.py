"""A lone surrogate in a frame's text never costs its display, a diff, a comparison or a report.

Why: a Python str may hold one (text decoded with ``surrogateescape``, a provider's JSON escape
``\\ud800``) and the frame keeps it as data, but UTF-8 cannot carry it: Arrow string storage
(pandas' default with pyarrow) refuses it, and so do Jupyter's messages, so a frame that showed it
raised instead of displaying, or broke the kernel's output. What is shown — the frame's display and
the views made from frames (diff, compare, report, the panel's table) — and what is written to a
file has U+FFFD in its place; the frame's values are untouched. Run in both string storages, and
once in a real kernel.
"""
from __future__ import annotations

import json
import os

import nbformat
import pandas as pd
import pytest

import hl_notebook
from hl_notebook.call import CallResult
from hl_notebook.frame import to_frame
from hl_notebook.spec import ChatSpec
from hl_notebook.widget.render import table_html
from nbclient import NotebookClient

BROKEN_INPUT = "caf\udce9 menu"  # a Latin-1 byte decoded with surrogateescape
BROKEN_OUTPUT = "half \ud800 done"  # a lone high surrogate, as a JSON escape gives it


@pytest.fixture(params=["python", "pyarrow"])
def storage(request):
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow")
    with pd.option_context("mode.string_storage", request.param):
        yield request.param


def frame_of(topics: list[str], outputs: list[str], model: str = "m") -> pd.DataFrame:
    results = []
    for call, (topic, output) in enumerate(zip(topics, outputs)):
        spec = ChatSpec(endpoint="chat", messages=({"role": "user", "content": "about {{topic}}"},),
                        model_config={"model": model, "provider": "mock"}, inputs={"topic": topic})
        response = {"data": [{"id": f"data_{model}_{call}", "index": 0, "output": output, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 2, "generation_tokens": 3, "total_tokens": 5}}
        results.append(CallResult(call, spec, response, latency_s=0.1))
    return to_frame(results)


def assert_utf8(text: str) -> None:
    text.encode("utf-8")  # what Jupyter's messages and a report file need
    assert "\ufffd" in text


def test_the_frame_keeps_the_text_and_shows_it_with_a_replacement_character(storage):
    frame = frame_of([BROKEN_INPUT, "tea"], [BROKEN_OUTPUT, "fine"])
    assert frame["inputs.topic"].tolist() == [BROKEN_INPUT, "tea"]
    assert frame["output"].tolist() == [BROKEN_OUTPUT, "fine"]
    assert_utf8(repr(frame))
    html = frame._repr_html_()
    assert_utf8(html)
    assert "caf\ufffd menu" in html and "half \ufffd done" in html
    assert frame["inputs.topic"].tolist() == [BROKEN_INPUT, "tea"]  # displaying changed nothing


def test_diff_and_compare_match_rows_whose_input_has_one(storage):
    old = frame_of([BROKEN_INPUT, "tea"], ["one", "two"])
    new = frame_of([BROKEN_INPUT, "tea"], ["one", "three"])
    table = hl_notebook.diff(old, new)
    assert table["match"].tolist() == ["both", "both"]
    assert table["changed"].tolist() == [False, True]
    assert table["inputs.topic"].tolist() == ["caf\ufffd menu", "tea"]  # a view: shown as U+FFFD
    assert old["inputs.topic"].tolist() == new["inputs.topic"].tolist() == [BROKEN_INPUT, "tea"]
    assert_utf8(table._repr_html_())
    assert_utf8(hl_notebook.compare(new, baseline=old)._repr_html_())
    collapsed = hl_notebook.compare(frame_of([BROKEN_INPUT], [BROKEN_OUTPUT]), collapse=True)
    assert_utf8(collapsed._repr_html_())


def test_a_diff_of_outputs_with_one_shows_it(storage):
    table = hl_notebook.diff(frame_of(["tea"], ["plain words"]), frame_of(["tea"], [BROKEN_OUTPUT]))
    assert table["new.output"].tolist() == ["half \ufffd done"] and table["changed"].tolist() == [True]
    assert "{+half \ufffd done+}" in table["diff"].iloc[0]
    assert_utf8(table._repr_html_())


def test_a_report_is_written_with_a_replacement_character(storage, tmp_path):
    frame = frame_of([BROKEN_INPUT, "tea"], [BROKEN_OUTPUT, "fine"])
    path = hl_notebook.report(frame, tmp_path / "report.html", baseline=frame_of([BROKEN_INPUT], ["old"]),
                              charts=False)
    text = path.read_text(encoding="utf-8")
    assert "caf\ufffd menu" in text and "half \ufffd done" in text


def test_the_panel_table_shows_one_as_a_replacement_character(storage):
    html = table_html(frame_of([BROKEN_INPUT], [BROKEN_OUTPUT]))
    assert_utf8(html)
    assert json.loads(json.dumps(html, ensure_ascii=False).encode("utf-8"))  # a widget value on the comm


def test_a_cell_whose_frame_holds_one_displays_it_in_a_real_kernel(tmp_path, monkeypatch):
    """Jupyter's messages are UTF-8: a display holding a lone surrogate broke the cell's output and
    stopped the notebook with a UnicodeEncodeError (the embedded server answers the good row)."""
    monkeypatch.setenv("HL_NOTEBOOK_HOME", str(tmp_path))  # the kernel's private embedded server
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext hl_notebook\nrows = [{'topic': 'tea'}, {'topic': 'caf\\udce9 menu'}]"),
        nbformat.v4.new_code_cell("%%hlchat --model m --inputs rows --out df\nuser: about {{topic}}"),
        nbformat.v4.new_code_cell("print(df['inputs.topic'].tolist() == ['tea', 'caf\\udce9 menu'])"),
    ]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    shown = notebook.cells[1].outputs[-1]["data"]
    assert "caf\ufffd menu" in shown["text/plain"] and "caf\ufffd menu" in shown["text/html"]
    assert notebook.cells[2].outputs[0]["text"] == "True\n"  # the frame kept the text


def test_streamed_text_with_one_is_drawn_in_a_terminal_and_in_a_notebook(monkeypatch):
    """The deltas of ``--stream`` are drawn as they arrive: to stdout (UTF-8) in a terminal, as
    display areas in a notebook; both must be UTF-8, the call's text keeps the surrogate."""
    import io
    import sys

    import IPython.display

    from hl_notebook.display import StreamView

    terminal = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", terminal)
    view = StreamView()
    view.on_delta(0, 0, BROKEN_OUTPUT)
    terminal.flush()
    assert "half \ufffd done" in terminal.buffer.getvalue().decode("utf-8")
    assert view.texts[(0, 0)] == BROKEN_OUTPUT

    drawn = []
    monkeypatch.setattr(IPython.display, "display", lambda bundle, **kwargs: drawn.append(bundle))
    view = StreamView()
    view.notebook = True
    view.on_delta(0, 0, BROKEN_OUTPUT)
    assert drawn and all("\ufffd" in bundle["text/plain"] for bundle in drawn)
    json.dumps(drawn, ensure_ascii=False).encode("utf-8")


def test_scores_keep_one_and_a_summary_shows_it(storage):
    """A score function may return the row's own text; a summary's labels may be inputs (``by``)."""
    frame = frame_of([BROKEN_INPUT, "tea"], [BROKEN_OUTPUT, "fine"])
    scored = hl_notebook.score(frame, lambda row: row["output"], name="echo")
    assert scored["score.echo"].tolist() == [BROKEN_OUTPUT, "fine"]
    assert_utf8(repr(scored))
    table = hl_notebook.summary(frame, by="inputs.topic")
    assert list(table.index) == ["caf\ufffd menu", "tea"]
    repr(table).encode("utf-8")
