"""``POST /v4/feedback``: exact bodies, one item or a list, replace/unset rules, all-or-nothing
4xx answers, and the feedback of each log in ``GET /logs`` (issue 13)."""
from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import pytest

from hl_notebook.server.bodies import log_body
from hl_notebook.server.store import FeedbackChange, Store
from tests.server.helpers import HELLO, chat, id_pattern, logs, mock_config, send, unique

FEEDBACK_ID = id_pattern("fbk")


@pytest.fixture
def call(server) -> dict[str, Any]:
    """A /chat call of three samples in a project of its own: {"project_id", "ids"}."""
    result = chat(server, {"project": unique("feedback"), "model_config": mock_config(), "messages": HELLO,
                           "num_samples": 3})
    return {"project_id": result["project_id"], "ids": [d["id"] for d in result["data"]]}


def feedback_of(server, call: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Log id -> its feedback, as GET /logs shows it."""
    return {log["id"]: log["feedback"] for log in logs(server, call["project_id"])}


def when(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["created_at"])


def test_one_item_answers_one_feedback_response(server, call):
    log_id = call["ids"][0]
    response = server.post("/feedback", {"type": "rating", "value": "good", "data_id": log_id, "user": "ann"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert FEEDBACK_ID.fullmatch(body["id"])
    assert body == {"id": body["id"], "type": "rating", "value": "good", "data_id": log_id, "user": "ann",
                    "created_at": body["created_at"]}
    assert when(body).utcoffset().total_seconds() == 0
    stored = feedback_of(server, call)
    assert stored == {log_id: [body], call["ids"][1]: [], call["ids"][2]: []}
    assert {log["experiment_id"] for log in logs(server, call["project_id"])} == {None}  # /chat: no experiment


def test_a_list_answers_a_list_in_order(server, call):
    items = [{"type": "rating", "value": "bad", "data_id": call["ids"][2]},
             {"type": "comment", "value": "too long", "data_id": call["ids"][0]},
             {"type": "my-label", "value": "7", "data_id": call["ids"][2], "created_at": "2024-03-01T12:00:00"}]
    body = server.post("/feedback", items).json()
    assert [(b["type"], b["value"], b["data_id"]) for b in body] == [(i["type"], i["value"], i["data_id"]) for i in items]
    assert all("user" not in b for b in body)  # absent, never null: the SDK's schema has no nullable
    assert body[2]["created_at"] == "2024-03-01T12:00:00+00:00"  # a naive time is UTC
    stored = feedback_of(server, call)
    assert stored[call["ids"][2]] == [body[0], body[2]] and stored[call["ids"][0]] == [body[1]]
    assert server.post("/feedback", []).json() == []


def test_a_new_value_replaces_the_old_one_and_unset_removes_it(server, call):
    log_id = call["ids"][1]
    first = server.post("/feedback", {"type": "rating", "value": "good", "data_id": log_id}).json()
    second = server.post("/feedback", {"type": "rating", "value": "bad", "data_id": log_id}).json()
    assert second["id"] == first["id"] and second["value"] == "bad"
    assert feedback_of(server, call)[log_id] == [second]
    removed = server.post("/feedback", {"type": "rating", "unset": True, "data_id": log_id}).json()
    assert (removed["id"], removed["value"]) == (first["id"], "bad")  # what was removed
    assert feedback_of(server, call)[log_id] == []
    again = server.post("/feedback", {"type": "rating", "unset": True, "data_id": log_id}).json()
    assert (again["id"], again["value"]) == (first["id"], "")  # nothing was set: nothing to remove


def test_action_and_issue_keep_one_feedback_per_value(server, call):
    log_id = call["ids"][0]
    items = [{"type": "action", "value": value, "data_id": log_id} for value in ("copy", "share", "copy")]
    body = server.post("/feedback", items).json()
    assert body[0]["id"] == body[2]["id"] != body[1]["id"]
    assert [(f["type"], f["value"]) for f in feedback_of(server, call)[log_id]] == [("action", "share"), ("action", "copy")]
    server.post("/feedback", {"type": "action", "value": "share", "data_id": log_id, "unset": True})
    assert [(f["type"], f["value"]) for f in feedback_of(server, call)[log_id]] == [("action", "copy")]
    response = server.post("/feedback", {"type": "issue", "data_id": log_id, "unset": True})
    assert response.status_code == 422
    assert response.json() == {"detail": [{"loc": ["body", "value"], "type": "missing",
                                           "msg": "value is required to unset 'issue' feedback "
                                                  "(it has several values per log)"}]}


def test_an_unknown_log_is_404_and_nothing_is_stored(server, call):
    items = [{"type": "rating", "value": "good", "data_id": call["ids"][0]},
             {"type": "rating", "value": "good", "data_id": "data_doesnotexist0000000"},
             {"type": "rating", "value": "good", "data_id": "data_alsomissing00000000"}]
    response = server.post("/feedback", items)
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "log data_doesnotexist0000000 not found"}  # the first unknown one
    one = server.post("/feedback", items[2])
    assert (one.status_code, one.json()) == (404, {"detail": "log data_alsomissing00000000 not found"})
    assert all(f == [] for f in feedback_of(server, call).values())


@pytest.mark.parametrize("body, loc, kind", [
    ({"value": "good"}, ["body", "type"], "missing"),
    ({"type": "", "value": "good"}, ["body", "type"], "string_too_short"),
    ({"type": "rating"}, ["body", "value"], "missing"),
    ({"type": "rating", "value": 5}, ["body", "value"], "string_type"),
    ({"type": "rating", "value": "good", "data_id": None}, ["body", "data_id"], "string_type"),
    ({"type": "rating", "value": "good", "created_at": "yesterday"}, ["body", "created_at"], "datetime_from_date_parsing"),
    ({"type": "rating", "value": "good", "created_at": "9999-12-31T23:59:59-12:00"}, ["body", "created_at"],
     "value_error"),  # after year 9999 in UTC: no timestamp, and no 500
    ({"type": "rating", "value": "good", "unset": "perhaps"}, ["body", "unset"], "bool_parsing"),
    ("good", ["body"], "model_type"),
])
def test_a_bad_item_is_422_with_loc_msg_type_only(server, call, body, loc, kind):
    item = {"data_id": call["ids"][0], **body} if isinstance(body, dict) else body
    response = server.post("/feedback", item)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert set(error) == {"loc", "msg", "type"} and (error["loc"], error["type"]) == (loc, kind)


def test_a_list_with_a_bad_item_stores_none_of_it(server, call):
    good = {"type": "rating", "value": "good", "data_id": call["ids"][0]}
    response = server.post("/feedback", [good, {"type": "rating", "value": "bad"}, good, {"value": "x", "data_id": "y"}])
    assert response.status_code == 422
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [
        (["body", 1, "data_id"], "missing"), (["body", 3, "type"], "missing")]
    assert all(f == [] for f in feedback_of(server, call).values())


@pytest.mark.parametrize("raw, loc, kind", [
    (b"", ["body"], "missing"),
    (b"{not json", ["body"], "json_invalid"),
    (b'{"type": "rating", "value": NaN, "data_id": "x"}', ["body", "value"], "finite_number"),
    (b'{"type": "rating", "value": "\\ud800", "data_id": "x"}', ["body", "value"], "string_unicode"),
])
def test_a_body_no_item_can_come_from_is_422(server, raw, loc, kind):
    response = send(server, "POST", "/feedback", data=raw,
                    headers={**server.headers, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(loc, kind)]


def test_feedback_needs_the_api_key(server, call):
    item = {"type": "rating", "value": "good", "data_id": call["ids"][0]}
    response = send(server, "POST", "/feedback", item, headers={"X-API-KEY": "wrong"})
    assert (response.status_code, response.json()) == (401, {"detail": "invalid or missing X-API-KEY"})
    assert all(f == [] for f in feedback_of(server, call).values())


def test_a_database_from_before_feedback_opens_and_takes_feedback(tmp_path):
    """Files written before logs had ``experiment_id`` (and before the feedback table) are upgraded in place."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
            CREATE TABLE logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, project_id TEXT NOT NULL,
                config_id TEXT NOT NULL, session_id TEXT, parent_id TEXT, sample_index INTEGER NOT NULL,
                endpoint TEXT NOT NULL, created_at REAL NOT NULL, inputs TEXT, messages TEXT, output TEXT,
                finish_reason TEXT, error TEXT, metadata TEXT, source TEXT, usage TEXT, saved INTEGER NOT NULL,
                inputs_ref TEXT, messages_ref TEXT);""")
        db.execute("INSERT INTO projects VALUES ('pr_old', 'old', 0)")
        db.execute("INSERT INTO logs (id, project_id, config_id, sample_index, endpoint, created_at, output, metadata,"
                   " saved) VALUES ('data_old', 'pr_old', 'config_old', 0, 'chat', 0, 'answer', 'null', 1)")
    store = Store(path)
    body = log_body(store.log("data_old"))
    assert (body["experiment_id"], body["feedback"], body["output"]) == (None, [], "answer")
    (row,) = store.submit_feedback([FeedbackChange("data_old", "rating", "good")])
    (shown,) = log_body(store.logs("pr_old", 0, 10)[0][0])["feedback"]
    assert shown == {"id": row["id"], "type": "rating", "value": "good", "data_id": "data_old",
                     "created_at": shown["created_at"]}
