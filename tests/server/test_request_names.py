"""Wire names only: pydantic's field name is not an alias for ``model_config``; streamed events
carry the session id resolved from ``session_reference_id`` from the first event on."""
from __future__ import annotations

import json


def test_config_is_not_accepted_instead_of_model_config(server):
    response = server.post("/chat", {"messages": [{"role": "user", "content": "x"}],
                                     "config": {"model": "m", "provider": "mock"}})
    assert response.status_code == 422
    assert response.json() == {"detail": [{"loc": ["body", "model_config"], "msg": "Field required",
                                           "type": "missing"}]}


def test_stream_events_carry_the_resolved_session_from_the_start(server):
    body = {"messages": [{"role": "user", "content": "a b"}], "stream": True, "session_reference_id": "ref-1",
            "model_config": {"model": "m", "provider": "mock", "temperature": 0}}
    response = server.post("/chat", body, stream=True)
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    sessions = {event["session_id"] for event in events}
    assert len(sessions) == 1 and sessions.pop().startswith("sesh_")
