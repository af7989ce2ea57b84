"""diff() / compare(baseline=, collapse=) / %%hlchat --baseline on real runs of the mock provider."""
from __future__ import annotations

import pandas as pd
import pytest

import hl_notebook
from hl_notebook.diffing import diff_summary, word_diff
from hl_notebook.errors import HLUsageError

ROWS = [{"topic": "tea"}, {"topic": "rain"}, {"topic": "maps"}]


@pytest.fixture
def runs(point, server):
    point(server)
    old = hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=0, inputs=ROWS)
    new = hl_notebook.sweep("user: more about {{topic}}", model=["a", "b", "c"], temperature=0,
                            inputs=[*ROWS[1:], {"topic": "snow"}])
    return old, new


def test_rows_match_by_config_input_and_sample_and_unmatched_rows_are_listed(runs):
    old, new = runs
    table = hl_notebook.diff(old, new)
    assert list(table.columns[:4]) == ["model", "inputs.topic", "sample", "match"]
    assert len(table) == 3 * 3 + 2  # every new row, plus the two old "tea" rows without a partner
    assert table["match"].value_counts().to_dict() == {"both": 4, "only new": 5, "only old": 2}
    both = table[table["match"] == "both"]
    assert set(zip(both["model"], both["inputs.topic"])) == {("a", "rain"), ("a", "maps"), ("b", "rain"),
                                                             ("b", "maps")}
    row = both.iloc[0]
    assert (row["old.output"], row["new.output"]) == ("a: about rain", "a: more about rain")
    assert row["changed"] and row["diff"] == "a: {+more+} about rain"
    only_old = table[table["match"] == "only old"]
    assert only_old["inputs.topic"].tolist() == ["tea", "tea"] and only_old["new.output"].isna().all()
    assert table.loc[table["match"] != "both", "changed"].isna().all()
    assert table.iloc[-2:]["match"].tolist() == ["only old", "only old"]  # after the new frame's rows
    assert diff_summary(table) == "11 rows: 4 matched (4 changed), 2 only old, 5 only new"


def test_an_unchanged_rerun_matches_every_row_unchanged(point, server):
    point(server)
    first = hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=0, inputs=ROWS, num_samples=2)
    second = hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=0, inputs=ROWS, num_samples=2)
    table = hl_notebook.compare(second, baseline=first)
    assert (table["match"] == "both").all() and len(table) == 12
    assert not table["changed"].any() and (table["diff"] == "").all()
    assert table["sample"].tolist() == [0, 1] * 6


def test_one_config_against_another_compares_them_row_by_row(point, server):
    point(server)
    old = hl_notebook.sweep("user: about {{topic}}", model="a", temperature=0, inputs=ROWS)
    new = hl_notebook.sweep("user: about {{topic}}", model="b", temperature=0, inputs=ROWS)
    table = hl_notebook.diff(old, new)
    assert (table["match"] == "both").all() and table["changed"].all()
    assert table["old.config"].tolist() == ["a"] * 3 and table["new.config"].tolist() == ["b"] * 3
    assert table["diff"].iloc[0] == "[-a:-]{+b:+} about tea"


def test_score_cost_and_latency_deltas(runs):
    old, new = runs
    old = hl_notebook.score(old, lambda row: len(row["output"]), name="chars")
    new = hl_notebook.score(new, lambda row: len(row["output"]), name="chars")
    new = hl_notebook.score(new, lambda row: "x", name="label")
    hl_notebook.set_price("a", prompt=1_000_000, generation=1_000_000)
    try:
        table = hl_notebook.diff(hl_notebook.add_cost(old), hl_notebook.add_cost(new))
    finally:
        from hl_notebook.pricing import clear_prices
        clear_prices()
    both = table[table["match"] == "both"]
    assert (both["delta.score.chars"] == len("more ")).all()  # "a: more about rain" vs "a: about rain"
    a_rain = both[(both["model"] == "a") & (both["inputs.topic"] == "rain")].iloc[0]
    assert a_rain["old.cost_usd"] == 2 + 3 and a_rain["new.cost_usd"] == 3 + 4  # $1 per prompt/generated word
    assert a_rain["delta.cost_usd"] == 2
    assert "delta.latency_s" in table.columns
    assert "new.score.label" in table.columns and "delta.score.label" not in table.columns  # text: no delta
    assert table.loc[table["match"] == "only new", "delta.score.chars"].isna().all()


def test_word_diff_marks_removed_and_added_words():
    assert word_diff("the cat sat", "the dog sat down") == "the [-cat-]{+dog+} sat {+down+}"
    assert word_diff("same", "same") == ""
    assert word_diff(None, "new text") == "{+new text+}"


def test_collapse_shows_each_distinct_output_once_with_its_count(point, server):
    point(server)
    frame = hl_notebook.sweep("user: about {{topic}}", model="a", temperature=[0.0, 1.0], inputs=ROWS[:1],
                              num_samples=3)
    wide = hl_notebook.compare(frame, collapse=True)
    assert wide.loc["tea", "0.0"] == "a: about tea ×3"
    assert len(wide.loc["tea", "1.0"].splitlines()) == 3 and "×" not in wide.loc["tea", "1.0"]
    assert hl_notebook.compare(frame).loc["tea", "0.0"].count("a: about tea") == 3  # default unchanged
    with pytest.raises(HLUsageError, match="collapse"):
        hl_notebook.compare(frame, baseline=frame, collapse=True)


def test_diff_needs_result_frames(runs):
    old, _ = runs
    with pytest.raises(HLUsageError, match="no output column"):
        hl_notebook.diff(pd.DataFrame({"x": [1]}), old)
    with pytest.raises(HLUsageError, match="no column 'nope'"):
        hl_notebook.diff(old, old, by="nope")


def test_the_magic_displays_the_diff_against_a_baseline_and_returns_the_frame(shell, capsys):
    # one-line errors: %config from an earlier test in this session may have turned tracebacks on
    shell.run_line_magic("config", "HLSettings.show_traceback = False")
    shell.user_ns["rows"] = ROWS
    shell.run_cell_magic("hlchat", "--model a --temperature 0 --inputs rows --out before", "user: about {{topic}}")
    shown = []
    shell.display_pub.publish = lambda data, **kwargs: shown.append(data)
    try:
        frame = shell.run_cell_magic("hlchat", "--model b --temperature 0 --inputs rows --baseline before",
                                     "user: about {{topic}}")
    finally:
        del shell.display_pub.publish
    assert frame["model"].tolist() == ["b"] * 3  # the new frame is returned
    assert len(shown) == 1
    assert "[-a:-]{+b:+} about tea" in shown[0]["text/html"] and "only old" not in shown[0]["text/html"]
    capsys.readouterr()
    shell.run_cell("%%hlchat --model b --baseline nothing\nuser: hi")
    assert capsys.readouterr().out.strip() == "HLUsageError: --baseline 'nothing' is not defined in the notebook"


def test_frames_with_different_inputs_are_compared_not_refused(point, server):
    """A baseline with template inputs against a run without them (another cell, history): the
    input columns of one frame are missing in the other. This raised KeyError: 'new.inputs.topic'."""
    point(server)
    old = hl_notebook.sweep("user: about {{topic}}", model="a", temperature=0, inputs=ROWS[:2])
    new = hl_notebook.sweep("user: about tea", model="a", temperature=0)
    table = hl_notebook.diff(old, new)
    assert len(table) == 3 and table["match"].value_counts().to_dict() == {"only old": 2, "only new": 1}
    assert table["inputs.topic"].isna().sum() == 1  # the new row has no topic
    back = hl_notebook.diff(new, old)
    assert back["match"].value_counts().to_dict() == {"only new": 2, "only old": 1}
