"""report(): one self-contained HTML file; and result frames keep working with to_csv / to_parquet.

The browser check (the file opened in headless Chromium, tables and images rendered) is
tests/ui/test_report_ui.py.
"""
from __future__ import annotations

import base64
import builtins
import importlib.util
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

import hl_notebook
from hl_notebook.errors import HLConfigError, HLUsageError
from hl_notebook.pricing import clear_prices

ROWS = [{"topic": "tea"}, {"topic": "rain"}, {"topic": "<b>maps</b>"}]


@pytest.fixture
def scored(point, server):
    point(server)
    frame = hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=0, inputs=ROWS, num_samples=2)
    frame = hl_notebook.score(frame, lambda row: len(row["output"]), name="chars")
    frame = hl_notebook.judge(frame, "user: {{output}} pass", name="ok", model="j")
    hl_notebook.set_price("a", prompt=1_000_000, generation=1_000_000)
    yield hl_notebook.add_cost(frame)
    clear_prices()


class Resources(HTMLParser):
    """Every tag and every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value for name, value in attrs if name in ("src", "href", "srcset", "data") and value]


def test_the_report_is_one_self_contained_file_with_tables_and_charts(scored, tmp_path):
    path = hl_notebook.report(scored, tmp_path / "report.html", title="Tea & rain")
    text = path.read_text(encoding="utf-8")
    page = Resources()
    page.feed(text)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.urls and all(url.startswith("data:image/png;base64,") for url in page.urls)  # nothing to fetch
    assert not re.search(r"url\(|@import", text)  # no CSS resources either
    for url in page.urls:
        assert base64.b64decode(url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.tags.count("img") == 3  # mean score.chars, mean score.ok, total cost
    assert page.tags.count("table") == 3  # summary, comparison, all rows
    for section in ("summary", "charts", "comparison", "rows"):
        assert f'<section id="{section}">' in text
    assert "<title>Tea &amp; rain</title>" in text
    assert "&lt;b&gt;maps&lt;/b&gt;" in text and "<b>maps</b>" not in text  # cell text is escaped
    assert "a: about tea ×2" in text  # the comparison shows each distinct output once
    assert "mean_score.chars" in text and "total_cost_usd" in text
    assert text.count("b: about rain") >= 3  # comparison and full rows (one per sample)
    assert "call_key" in text  # every column of the full rows


def test_the_summary_table_has_cost_and_mean_scores(scored, tmp_path):
    from hl_notebook.reporting import summary_table

    table = summary_table(scored)
    assert table.loc["a", "total_cost_usd"] == 3 * (2 + 2 * 3)  # 2 prompt words, 2 samples of 3 words
    assert table.loc["b", "total_cost_usd"] == 0
    assert table.loc["a", "mean_score.ok"] == 1.0 and table.loc["a", "mean_score.chars"] > 0


def test_a_baseline_adds_the_diff_section(scored, point, server, tmp_path):
    before = hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=0, inputs=ROWS[:2],
                               num_samples=2)
    text = hl_notebook.report(scored, tmp_path / "r.html", baseline=before).read_text()
    assert '<section id="baseline">' in text and "12 rows: 8 matched (0 changed), 0 only old, 4 only new" in text


def test_without_matplotlib_the_error_is_one_line_and_charts_false_still_writes(scored, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(HLConfigError, match="pip install matplotlib"):
        hl_notebook.report(scored, tmp_path / "r.html")
    text = hl_notebook.report(scored, tmp_path / "r.html", charts=False).read_text()
    assert "<img" not in text and '<section id="rows">' in text


def test_report_refuses_what_it_cannot_write(scored, tmp_path):
    with pytest.raises(HLUsageError, match="does not exist"):
        hl_notebook.report(scored, tmp_path / "missing" / "r.html")
    with pytest.raises(HLUsageError, match="result frame"):
        hl_notebook.report(pd.DataFrame({"x": [1]}), tmp_path / "r.html")


def test_result_frames_round_trip_through_csv(scored, tmp_path):
    path = tmp_path / "rows.csv"
    scored.to_csv(path, index=False)
    back = pd.read_csv(path)
    assert list(back.columns) == list(scored.columns)
    assert back["output"].tolist() == scored["output"].tolist()
    assert back["cost_usd"].sum() == scored["cost_usd"].sum()
    history = hl_notebook.history()
    assert "session" in pd.read_csv(pd.io.common.StringIO(history.to_csv(index=False))).columns


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed (extra: parquet)")
def test_result_frames_round_trip_through_parquet(scored, tmp_path):
    path = tmp_path / "rows.parquet"
    scored.to_parquet(path)
    back = pd.read_parquet(path)
    assert list(back.columns) == list(scored.columns)
    assert back["score.ok"].tolist() == scored["score.ok"].tolist()
    assert back["cost_usd"].sum() == scored["cost_usd"].sum()
    hl_notebook.history().to_parquet(tmp_path / "history.parquet")
