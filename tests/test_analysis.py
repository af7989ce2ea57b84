"""compare / summary / plot on real sweep results, and the sweep's progress bar."""
from __future__ import annotations

import matplotlib
import pandas as pd

import hl_notebook

matplotlib.use("Agg")

ROWS = [{"topic": "tea"}, {"topic": "rain"}, {"topic": "maps"}]


def sweep(point, server, **kwargs):
    point(server)
    return hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=[0.0, 1.0], inputs=ROWS,
                             num_samples=2, **kwargs)


def test_compare_is_one_row_per_input_and_one_column_per_config(point, server):
    frame = sweep(point, server)
    wide = hl_notebook.compare(frame)
    assert isinstance(wide, pd.DataFrame) and wide.shape == (3, 4)  # a DataFrame, not a Styler
    assert "tea" in wide.to_csv()
    assert list(wide.index) == ["tea", "rain", "maps"]
    assert list(wide.columns) == ["a | 0.0", "a | 1.0", "b | 0.0", "b | 1.0"]
    assert wide.columns.name == "model | temperature"
    assert wide.loc["tea", "a | 0.0"] == "[0] a: about tea\n[1] a: about tea"
    assert "pre-wrap" in wide._repr_html_()  # displayed wrapped
    assert type(wide.iloc[:2]) is pd.DataFrame  # derived frames are plain
    for by in (["model"], "model"):  # a string works as well as a list
        assert list(hl_notebook.compare(frame, by=by).columns) == ["a", "b"]
    assert list(hl_notebook.summary(frame, by="temperature").index) == [0.0, 1.0]


def test_summary_counts_errors_latency_and_tokens(point, server):
    point(server)
    frame = hl_notebook.sweep("user: x", model="m", provider=["mock", "broken"], temperature=0, inputs=ROWS)
    table = hl_notebook.summary(frame)
    assert list(table.index) == ["mock", "broken"]
    assert table.loc["mock", "calls"] == 3 and table.loc["mock", "failed"] == 0
    assert table.loc["broken", "error_rate"] == 1.0 and table.loc["broken", "samples"] == 0
    assert table.loc["mock", "latency_p95_s"] >= table.loc["mock", "latency_p50_s"] > 0
    assert table.loc["mock", "mean_call_total_tokens"] > 0


def test_plot_has_latency_and_token_axes(point, server):
    figure = hl_notebook.plot(sweep(point, server))
    latency, tokens = figure.axes[:2]
    assert latency.get_xlabel() == "latency per call (s)"
    assert [t.get_text() for t in latency.get_yticklabels()] == ["a | 0.0", "a | 1.0", "b | 0.0", "b | 1.0"]
    assert tokens.get_xlabel() == "mean tokens per call"


def test_progress_bar_with_failed_count_when_asked(point, server, capsys):
    point(server)
    capsys.readouterr()
    hl_notebook.sweep("user: x", model="m", provider=["mock", "broken"], temperature=0, progress=True)
    err = capsys.readouterr().err
    assert "hlchat" in err and "2/2" in err and "failed=1" in err
    hl_notebook.sweep("user: x", model=["m", "n"], temperature=0)  # outside a notebook: quiet by default
    assert capsys.readouterr().err == ""
