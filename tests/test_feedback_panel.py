"""👍/👎 per results row in the panel (issue 13): the decisions in PanelState, then the widgets
driven from Python against the real server process (the rating is feedback on the row's log)."""
from __future__ import annotations

import html
import re
import uuid

import pandas as pd
import pytest

import hl_notebook
from hl_notebook.errors import HLUsageError
from hl_notebook.widget import ChatPanel, render
from hl_notebook.widget.state import PanelState
from tests.server.helpers import logs


def results(run: int, rows: list[tuple[int, int, str | None, str]]) -> pd.DataFrame:
    """A run's rows as the panel keeps them: (call, sample, log id or None for a failed call, output)."""
    return pd.DataFrame({"run": pd.array([run] * len(rows), dtype="Int64"), "call": [r[0] for r in rows],
                         "sample": pd.array([r[1] for r in rows], dtype="Int64"),
                         "log_id": pd.array([r[2] for r in rows], dtype="string"),
                         "output": [r[3] for r in rows],
                         "error": [None if r[2] else "POST /chat returned 502: down" for r in rows]})


def sent(state: PanelState, error: str | None = None) -> pd.DataFrame:
    """What ``hl_notebook.feedback`` returns for one row: its feedback columns."""
    return pd.DataFrame({state.rating_column: [None if error else "good"], state.rating_column + ".error": [error]})


@pytest.fixture
def state() -> PanelState:
    made = PanelState()
    made.add_rows(results(1, [(0, 0, "data_a", "first answer"), (1, pd.NA, None, None)]))
    made.add_rows(results(2, [(0, 0, "data_b", "x" * 60), (0, 1, "data_c", "two\nlines")]))
    return made


# -- decisions (no widgets) -------------------------------------------------------------------------------
def test_the_rows_to_rate_are_the_tables_rows_that_have_a_log(state):
    assert state.rating_options() == [
        ("run 2 · call 0 · sample 0 · " + "x" * 39 + "…", "data_b"),
        ("run 2 · call 0 · sample 1 · two lines", "data_c"),
        ("run 1 · call 0 · sample 0 · first answer", "data_a")]  # newest run first, the failed call left out
    state.failed_only = True
    assert state.rating_options() == []  # only what the table shows
    assert PanelState().rating_options() == []


def test_a_rating_is_kept_in_its_row_and_shown_as_a_thumb(state):
    assert state.record_rating("data_c", "bad", sent(state)) == ("rated run 2 · call 0 · sample 1 👎 bad", "ok")
    assert state.record_rating("data_a", "good", sent(state)) == ("rated run 1 · call 0 · sample 0 👍 good", "ok")
    assert state.result["feedback.rating"].fillna("-").tolist() == ["good", "-", "-", "bad"]  # Save as keeps it
    table = state.table_rows()
    assert table["rating"].tolist() == ["", "👎", "👍", ""]
    headers = re.findall(r"<th[^>]*>([^<]+)</th>", render.table_html(table))
    assert headers[headers.index("error") + 1] == "rating"
    assert "rating" not in re.findall(r"<th[^>]*>([^<]+)</th>", render.table_html(PanelState().table_rows(
        results(1, [(0, 0, "data_x", "y")]))))  # no column before anything is rated


def test_a_refused_rating_is_an_error_and_changes_nothing(state):
    text, tone = state.record_rating("data_b", "good", sent(state, "not sent: log data_b not found on http://h/v4"))
    assert (text, tone) == ("run 2 · call 0 · sample 0: log data_b not found on http://h/v4", "error")
    assert "feedback.rating" not in state.result.columns


def test_rating_walks_down_the_table_and_needs_a_row(state):
    assert [state.next_to_rate(i) for i in ("data_b", "data_c", "data_a")] == ["data_c", "data_a", "data_a"]
    assert state.next_to_rate("data_gone") == "data_b"
    assert state.rating_frame("data_c")["output"].tolist() == ["two\nlines"]
    for missing in (None, "", "data_gone"):
        with pytest.raises(HLUsageError, match="nothing to rate: run first, then pick a row in Rate"):
            state.rating_frame(missing)
    custom = PanelState(rating_type="helpful", rating_values=("yes", "no"))
    assert (custom.rating_column, custom.thumb("yes"), custom.thumb("no"), custom.thumb("maybe")) == (
        "feedback.helpful", "👍", "👎", "maybe")


# -- the widgets ----------------------------------------------------------------------------------------
def status(panel: ChatPanel) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", panel._status.value))


def test_thumbs_send_feedback_at_once_and_move_to_the_next_row(shell, server):
    panel = ChatPanel(shell=shell)
    assert panel._rate_box.layout.display == "none"  # nothing to rate yet
    panel._thumbs_up.click()
    assert status(panel) == "nothing to rate: run first, then pick a row in Rate"
    project = f"panel-rate-{uuid.uuid4().hex[:8]}"
    panel._project.value, panel._messages.value, panel._samples.value = project, "user: rate me", 3
    panel._run.click()
    panel.wait(60)
    assert panel._rate_box.layout.display != "none"
    ids = panel.result["log_id"].tolist()
    assert [value for _, value in panel._rate_row.options] == ids and panel._rate_row.value == ids[0]
    panel._thumbs_up.click()
    assert status(panel) == "rated run 1 · call 0 · sample 0 👍 good" and panel._rate_row.value == ids[1]
    panel._thumbs_down.click()
    assert status(panel).endswith("sample 1 👎 bad") and panel._rate_row.value == ids[2]
    assert "👍" in panel._table.value and "👎" in panel._table.value
    stored = {log["id"]: [(f["type"], f["value"]) for f in log["feedback"]]
              for log in logs(server, _project_id(server, project))}
    assert stored == {ids[0]: [("rating", "good")], ids[1]: [("rating", "bad")], ids[2]: []}
    assert panel.result["feedback.rating"].fillna("-").tolist() == ["good", "bad", "-"]


def test_ratings_from_the_panel_teach_the_experiment(shell, server):
    project = f"panel-exp-{uuid.uuid4().hex[:8]}"
    a = hl_notebook.register_config("rate-a", temperature=0, project=project)
    b = hl_notebook.register_config("rate-b", temperature=0, project=project)
    experiment_id = hl_notebook.create_experiment([a, b], name="rated", project=project)
    panel = ChatPanel(shell=shell)
    panel._project.value, panel._messages.value, panel._samples.value = project, "user: hi", 4
    panel._endpoint.value = "experiment"
    panel._refresh.click()
    panel._experiment_picker.value = experiment_id
    panel._run.click()
    panel.wait(60)
    for _ in range(4):
        panel._thumbs_up.click()
    table = hl_notebook.experiment(experiment_id)
    used = panel.result["model_config_id"].value_counts()
    assert table["trials_count"].tolist() == [used.get(a, 0), used.get(b, 0)]
    assert table["mean"].tolist() == pytest.approx([(1 + used.get(a, 0)) / (2 + used.get(a, 0)),
                                                    (1 + used.get(b, 0)) / (2 + used.get(b, 0))])


def _project_id(server, name: str) -> str:
    return next(p["id"] for p in server.get("/projects", params={"size": 1000}).json()["records"] if p["name"] == name)
