"""score(): Python score functions over result frames (real runs on the mock provider, and history)."""
from __future__ import annotations

import pandas as pd
import pytest

import hl_notebook
from hl_notebook.errors import HLUsageError
from hl_notebook.frame import result_frame

ROWS = [{"topic": "tea"}, {"topic": "rain"}, {"topic": "maps"}]


@pytest.fixture
def frame(point, server):
    point(server)
    return hl_notebook.sweep("user: about {{topic}}", model=["a", "b"], temperature=0, inputs=ROWS)


def words(row):
    return len(row["output"].split())


def test_a_row_function_gives_a_typed_score_column_named_after_it(frame):
    scored = hl_notebook.score(frame, words)
    assert scored["score.words"].tolist() == [3, 3, 3, 3, 3, 3]  # "a: about tea" (mock contract)
    assert str(scored["score.words"].dtype) == "Int64"
    assert scored["score.words.error"].isna().all()
    assert list(scored.columns[-2:]) == ["score.words", "score.words.error"]
    assert list(frame.columns) == list(scored.columns[:-2])  # the input frame is unchanged
    assert "score.words" not in frame.columns
    assert type(scored) is type(result_frame(frame))  # the compact display of result frames
    assert "score.words" in repr(scored)


def test_scores_chain_and_keep_their_types(frame):
    scored = hl_notebook.score(frame, lambda row: row["model"] == "a", name="is_a")
    scored = hl_notebook.score(scored, lambda row: row["output"].upper(), name="shout")
    scored = hl_notebook.score(scored, lambda row: 0.5 if row["model"] == "a" else 1, name="half")
    assert str(scored["score.is_a"].dtype) == "boolean"
    assert scored["score.is_a"].tolist() == [True] * 3 + [False] * 3
    assert str(scored["score.shout"].dtype) == "string" and scored["score.shout"].iloc[0] == "A: ABOUT TEA"
    assert str(scored["score.half"].dtype) == "Float64" and scored["score.half"].tolist() == [0.5] * 3 + [1.0] * 3
    assert hl_notebook.score(frame, lambda row: 1)["score.score"].tolist() == [1] * 6  # a lambda without a name


def test_an_exception_in_the_function_is_that_rows_na_and_one_line_error(frame):
    def picky(row):
        if row["inputs.topic"] == "rain":
            raise ValueError("no rain\nplease")
        return 1

    scored = hl_notebook.score(frame, picky)
    rain = scored["inputs.topic"] == "rain"
    assert scored.loc[rain, "score.picky"].isna().all()
    assert scored.loc[~rain, "score.picky"].tolist() == [1, 1, 1, 1]
    assert scored.loc[rain, "score.picky.error"].tolist() == ["ValueError: no rain please"] * 2
    assert scored.loc[~rain, "score.picky.error"].isna().all()


def test_an_unusable_return_value_is_an_error_and_none_is_na(frame):
    scored = hl_notebook.score(frame, lambda row: [1] if row["model"] == "a" else None, name="odd")
    assert scored["score.odd"].isna().all()
    assert scored["score.odd.error"].iloc[0].startswith("TypeError: the score function returned list")
    assert scored["score.odd.error"].iloc[3:].isna().all()


def test_rescoring_replaces_the_columns_of_that_score(frame):
    once = hl_notebook.score(frame, lambda row: 1, name="s")
    twice = hl_notebook.score(once, lambda row: 2, name="s")
    assert list(twice.columns) == list(once.columns)
    assert twice["score.s"].tolist() == [2] * 6


def test_vectorized_functions_take_the_frame_and_must_line_up(frame):
    scored = hl_notebook.score(frame, lambda df: df["output"].str.len(), name="chars", vectorized=True)
    assert scored["score.chars"].tolist() == [len(o) for o in frame["output"]]
    listed = hl_notebook.score(frame, lambda df: [1, 2, 3, 4, 5, 6], name="n", vectorized=True)
    assert listed["score.n"].tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(HLUsageError, match="index is not the frame's"):
        hl_notebook.score(frame, lambda df: df["output"].str.len().reset_index(drop=True).iloc[:3],
                          name="x", vectorized=True)
    with pytest.raises(HLUsageError, match="returned 2 values for 6 rows"):
        hl_notebook.score(frame, lambda df: [1, 2], name="x", vectorized=True)
    broken = hl_notebook.score(frame, lambda df: df["missing"], name="broken", vectorized=True)
    assert broken["score.broken"].isna().all()
    assert broken["score.broken.error"].tolist() == ["KeyError: 'missing'"] * 6


def test_scores_work_on_history_and_filtered_frames(frame):
    history = hl_notebook.history()
    mine = history[history["call_key"].isin(frame["call_key"]) & (history["model"] == "b")]
    scored = hl_notebook.score(mine, words)
    assert len(scored) == 3 and scored["score.words"].eq(3).all()
    assert {"session", "run"} <= set(scored.columns)


def test_bad_arguments_are_usage_errors(frame):
    with pytest.raises(HLUsageError, match="needs a function"):
        hl_notebook.score(frame, "len")
    with pytest.raises(HLUsageError, match="non-empty string"):
        hl_notebook.score(frame, words, name="")


def test_score_on_an_empty_frame_keeps_the_columns(frame):
    scored = hl_notebook.score(frame.iloc[:0], words)
    assert len(scored) == 0 and "score.words" in scored.columns
    assert isinstance(scored, pd.DataFrame)
