"""``hl_notebook.feedback`` and ``hl_notebook.experiment`` against the real server process (issue 13).

Why: scores computed in the notebook become v4 feedback in one call, per-row problems stay rows
(never an exception for one row), and the experiment's statistics come back as a frame.
"""
from __future__ import annotations

import uuid

import pandas as pd
import pytest

import hl_notebook
from hl_notebook.client import HLClient
from hl_notebook.errors import HLConnectionError, HLNotFoundError, HLUsageError
from hl_notebook.learning import EXPERIMENT_COLUMNS
from support import closed_port_url
from tests.server.helpers import logs


@pytest.fixture
def served(server, point):
    return point(server)


@pytest.fixture
def requests_sent(monkeypatch) -> list[int]:
    """The size of each POST /feedback the client sends (a spy: the real request still goes out)."""
    sizes: list[int] = []
    real = HLClient.feedback

    def spy(self, items):
        sizes.append(len(items))
        return real(self, items)

    monkeypatch.setattr(HLClient, "feedback", spy)
    return sizes


def run(n: int = 4, project: str | None = None, **options) -> pd.DataFrame:
    return hl_notebook.chat("user: rate me", model="m-rated", project=project or f"fb-{uuid.uuid4().hex[:8]}",
                            num_samples=n, temperature=1, **options)


def stored(server, frame: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """Log id -> its feedback as (type, value), from GET /logs."""
    project_id = server.get("/projects", params={"size": 1000}).json()["records"]
    wanted = set(frame["log_id"].dropna())
    found = {}
    for project in project_id:
        for log in logs(server, project["id"]):
            if log["id"] in wanted:
                found[log["id"]] = [(f["type"], f["value"]) for f in log["feedback"]]
    return found


def test_a_scalar_is_sent_for_every_row_in_one_request(served, requests_sent):
    df = run(3)
    rated = hl_notebook.feedback(df, "good")
    assert requests_sent == [3]
    assert list(rated.columns) == [*df.columns, "feedback.rating", "feedback.rating.error"]
    assert str(rated["feedback.rating"].dtype) == "string" and str(rated["feedback.rating.error"].dtype) == "string"
    assert rated["feedback.rating"].tolist() == ["good"] * 3 and rated["feedback.rating.error"].isna().all()
    assert stored(served, df) == {log_id: [("rating", "good")] for log_id in df["log_id"]}
    assert "feedback.rating" not in df.columns  # the input frame is unchanged


def test_values_from_a_column_a_list_a_series_or_a_function(served):
    df = run(4)
    df["score.judge"] = [9, 3, 7.5, True]
    by_column = hl_notebook.feedback(df, "score.judge", type="judge-score")
    assert by_column["feedback.judge-score"].tolist() == ["9", "3", "7.5", "true"]
    by_list = hl_notebook.feedback(df, ["a", "b", "c", "d"], type="comment")
    assert by_list["feedback.comment"].tolist() == ["a", "b", "c", "d"]
    by_series = hl_notebook.feedback(df, df["score.judge"].map(lambda s: f"s{s}"), type="issue")
    assert by_series["feedback.issue"].tolist() == ["s9", "s3", "s7.5", "sTrue"]
    threshold = hl_notebook.feedback(df, lambda row: "good" if row["score.judge"] >= 7 else "bad")
    assert threshold["feedback.rating"].tolist() == ["good", "bad", "good", "bad"]  # True >= 7 is False
    found = stored(served, df)
    first = df["log_id"].iloc[0]
    assert sorted(found[first]) == [("comment", "a"), ("issue", "s9"), ("judge-score", "9"), ("rating", "good")]


def test_a_bad_row_is_a_row_error_and_the_others_are_sent(served, requests_sent):
    df = run(5)
    df.loc[1, "log_id"] = pd.NA  # a failed call has no log
    df.loc[3, "log_id"] = "data_NotOnThisServer000"  # a log of another server

    def value(row):
        if row["sample"] == 2:
            raise KeyError("score.judge")
        return None if row["sample"] == 4 else "good"

    rated = hl_notebook.feedback(df, value)
    errors = rated["feedback.rating.error"].tolist()
    assert rated["feedback.rating"].fillna("-").tolist() == ["good", "-", "-", "-", "-"]
    assert errors[0] is pd.NA
    assert errors[1] == "not sent: the row has no log_id (its call failed)"
    assert errors[2] == "not sent: the value function raised KeyError: 'score.judge'"
    assert errors[3] == f"not sent: log data_NotOnThisServer000 not found on {served.base_url}"
    assert errors[4] == "not sent: no value for this row"
    assert requests_sent == [2, 1]  # the server takes a request all or nothing: sent again without the unknown log
    assert stored(served, df) == {df["log_id"][0]: [("rating", "good")], df["log_id"][2]: [], df["log_id"][4]: []}


def test_values_that_are_not_feedback_values_are_row_errors(served):
    df = run(3)
    rated = hl_notebook.feedback(df, [float("nan"), {"a": 1}, "ok\ud800"], type="comment")
    assert rated["feedback.comment"].isna().all()
    assert rated["feedback.comment.error"].tolist() == [
        "not sent: no value for this row", "not sent: the value is a dict; give a string, a number or a bool",
        "not sent: the value has a lone surrogate, which is not valid UTF-8"]


def test_running_it_again_replaces_the_columns_and_the_rating(served):
    df = run(2)
    first = hl_notebook.feedback(df, "good")
    again = hl_notebook.feedback(first, "bad")
    assert list(again.columns) == list(first.columns) and again["feedback.rating"].tolist() == ["bad", "bad"]
    assert stored(served, df) == {log_id: [("rating", "bad")] for log_id in df["log_id"]}


@pytest.mark.parametrize("value, type, message", [
    (["good"], "rating", "feedback value: 1 values for 2 rows"),
    (pd.Series(["a", "b"], index=[5, 6]), "rating", "the Series' index is not the frame's"),
    ({"good": 7}, "rating", "a dict is not a value"),
    ("good", "", "feedback type must be a non-empty string"),
])
def test_mistakes_that_concern_every_row_raise(served, value, type, message):
    df = run(2)
    with pytest.raises(HLUsageError, match=message):
        hl_notebook.feedback(df, value, type=type)


def test_a_frame_without_log_ids_or_a_server_that_cannot_be_reached_raise(served, monkeypatch):
    with pytest.raises(HLUsageError, match="needs a result frame with a log_id column"):
        hl_notebook.feedback(pd.DataFrame({"output": ["x"]}), "good")
    df = run(1)
    with pytest.raises(HLConnectionError, match="cannot reach"):
        hl_notebook.feedback(df, "good", base_url=closed_port_url() + "/v4")


def test_experiment_shows_each_config_with_what_it_learned(served):
    project = f"fb-exp-{uuid.uuid4().hex[:8]}"
    a = hl_notebook.register_config("exp-a", temperature=0, project=project)
    b = hl_notebook.register_config("exp-b", temperature=0.5, project=project, name="warm")
    experiment_id = hl_notebook.create_experiment([a, b], name="a-vs-b", project=project)
    df = hl_notebook.chat("user: hi", experiment_id=experiment_id, num_samples=30, project=project)
    hl_notebook.feedback(df, lambda row: "good" if row["model_config_id"] == a else "bad")

    table = hl_notebook.experiment(experiment_id)
    assert list(table.columns) == EXPERIMENT_COLUMNS
    assert {c: str(t) for c, t in table.dtypes.items() if c in ("active", "trials_count", "mean", "spread")} == {
        "active": "boolean", "trials_count": "Int64", "mean": "Float64", "spread": "Float64"}
    assert table["config_id"].tolist() == [a, b] and table["experiment"].tolist() == ["a-vs-b"] * 2
    assert table["model"].tolist() == ["exp-a", "exp-b"] and table["temperature"].tolist() == [0, 0.5]
    assert table["name"].tolist()[1] == "warm" and table["active"].all()
    counts = df["model_config_id"].value_counts()
    assert table["trials_count"].tolist() == [counts.get(a, 0), counts.get(b, 0)]
    assert table["mean"].tolist() == pytest.approx([(1 + counts.get(a, 0)) / (2 + counts.get(a, 0)),
                                                    1 / (2 + counts.get(b, 0))])
    assert (table["spread"] < 0.9).all()
    pd.testing.assert_frame_equal(hl_notebook.experiment(experiment_id, project=project), table)
    with pytest.raises(HLNotFoundError, match="exp_doesnotexist"):
        hl_notebook.experiment("exp_doesnotexist")
    with pytest.raises(HLNotFoundError, match="not found in project"):
        hl_notebook.experiment("exp_doesnotexist", project=project)
