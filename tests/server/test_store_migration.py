"""A database file written before logs pointed at shared payloads still opens and reads the same.

Why: users keep ``~/.hl_notebook/server.sqlite`` across upgrades; the payload columns are added in
place, and logs written before keep their inline inputs and messages.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from hl_notebook.server.bodies import log_body
from hl_notebook.server.store import Store

OLD_LOGS = """
CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, project_id TEXT NOT NULL,
    config_id TEXT NOT NULL, session_id TEXT, parent_id TEXT, sample_index INTEGER NOT NULL,
    endpoint TEXT NOT NULL, created_at REAL NOT NULL, inputs TEXT, messages TEXT, output TEXT,
    finish_reason TEXT, error TEXT, metadata TEXT, source TEXT, usage TEXT, saved INTEGER NOT NULL);
"""


def test_logs_written_before_payloads_still_read_back(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    messages = [{"role": "user", "content": "from before"}]
    with sqlite3.connect(path) as db:
        db.executescript(OLD_LOGS)
        db.execute("INSERT INTO projects VALUES ('pr_old', 'old', 0)")
        db.execute("INSERT INTO logs (id, project_id, config_id, sample_index, endpoint, created_at, inputs, messages,"
                   " output, finish_reason, metadata, saved) VALUES ('data_old', 'pr_old', 'config_old', 0, 'chat', 0,"
                   " ?, ?, 'answer', 'stop', 'null', 1)", (json.dumps({"a": 1}), json.dumps(messages)))
    store = Store(path)
    Store(path)  # a second open finds the columns already there
    rows, total = store.logs("pr_old", 0, 10)
    assert total == 1
    body = log_body(rows[0])
    assert (body["id"], body["inputs"], body["messages"], body["output"]) == ("data_old", {"a": 1}, messages, "answer")
    assert log_body(store.log("data_old")) == body
