"""Text the store must give back exactly, on either engine: NUL characters (valid JSON, valid in
SQLite, impossible in PostgreSQL text) and the escape's own marker.

Why: a model may answer with a NUL and a user may paste one; on PostgreSQL that failed the call
with a 500 after the provider had run. Run with ``HL_TEST_DB=postgresql`` for the team store.
"""
from __future__ import annotations

from hypothesis import given, strategies as st

from hl_notebook.server.database import NUL_MARK, escape_nul, unescape_nul
from tests.server.helpers import logs, ok, unique

TRICKY = ["a\x00b", "\x00", NUL_MARK, NUL_MARK + "0", "x" + NUL_MARK + "\x00" + NUL_MARK * 2, "plain"]


@given(st.text(alphabet=st.sampled_from(["a", "\x00", NUL_MARK, "0", "é"]), max_size=12) | st.text(max_size=30))
def test_escaping_round_trips_any_text(text):
    stored = escape_nul(text)
    assert "\x00" not in stored
    assert unescape_nul(stored) == text


def test_nul_and_marker_characters_survive_a_chat_and_its_logs(server):
    for text in TRICKY:
        project = unique("nul") + text
        body = {"project": project, "messages": [{"role": "user", "content": text}],
                "inputs": {"v": text}, "metadata": {"m": text}, "source": text,
                "model_config": {"provider": "mock", "model": "m" + text, "temperature": 0, "name": "n" + text}}
        response = ok(server.post("/chat", body))
        assert response["data"][0]["output"] == f"m{text}: {text}".strip()
        (log,) = logs(server, response["project_id"])
        assert (log["messages"][-1]["content"], log["inputs"], log["metadata"], log["source"]) == \
            (text, {"v": text}, {"m": text}, text)
        assert log["output"] == response["data"][0]["output"]
        assert [p["name"] for p in server.get("/projects", params={"size": 1000}).json()["records"]
                if p["id"] == response["project_id"]] == [project]
