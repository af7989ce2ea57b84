"""A total deadline per call (issue 10, item 4): the per-read timeout restarts with every byte, so a
server that trickles SSE comments or body bytes would hold a cell for ever; ``HLClient(deadline=…)``
ends the whole call. The deadlines here are ~1 s functional bounds (what error, what is kept), not
timing assertions; the raw-socket server paces its writes itself."""
from __future__ import annotations

import json

import pytest

from hl_notebook.call import execute
from hl_notebook.client import HLClient, RetryPolicy
from hl_notebook.connection import Connection
from hl_notebook.errors import HLConnectionError, HLServerError, HLTimeoutError
from hl_notebook.secrets import Secret
from hl_notebook.spec import ChatSpec, build_body
from rawserver import RawServer, event, hang, reply, stream, trickle_body

SPEC = ChatSpec("chat", ({"role": "user", "content": "hello"},), model_config={"model": "m", "provider": "mock"})
STREAM_SPEC = ChatSpec("chat", SPEC.messages, model_config=SPEC.model_config, stream=True)
RESPONSE = {"data": [{"id": "data_raw0", "index": 0, "output": "hi", "finish_reason": "stop"}], "provider_responses": []}
DEADLINE = "no complete answer within 1 s (HLSettings.call_deadline)"


def client_for(base_url: str, **kwargs) -> HLClient:
    kwargs.setdefault("retry", RetryPolicy(max_retries=2, backoff_base=0.01))
    return HLClient(base_url, Secret("deadline-test-key-5d2e"), deadline=1.0, **kwargs)


def test_sse_comments_trickled_for_ever_end_at_the_deadline_with_the_partial_text_kept():
    with RawServer(stream(event("Hel"), event("lo"), then_trickle=b": keep-alive\n\n")) as server:
        result = execute(Connection(client_for(server.base_url), embedded=False), STREAM_SPEC)
    assert type(result.error) is HLTimeoutError
    assert str(result.error) == f"POST /chat: {DEADLINE}; partial output kept"
    assert result.response["data"][0]["output"] == "Hello"
    assert len(server.requests) == 1


def test_body_bytes_trickled_end_at_the_deadline_and_are_not_retried():
    body = json.dumps({**RESPONSE, "padding": "x" * 5000}).encode()
    with RawServer(trickle_body(200, body)) as server:
        with pytest.raises(HLTimeoutError) as info:
            client_for(server.base_url).chat("/chat", build_body(SPEC))
    assert str(info.value) == f"POST /chat: {DEADLINE}"
    assert len(server.requests) == 1  # the call may have run: never retried


def test_a_server_that_never_answers_ends_at_the_deadline_before_the_read_timeout():
    with RawServer(hang) as server:
        with pytest.raises(HLTimeoutError) as info:
            client_for(server.base_url, read_timeout=300).chat("/chat", build_body(SPEC))
    assert str(info.value) == f"POST /chat: {DEADLINE}"
    assert isinstance(info.value, HLConnectionError) and isinstance(info.value, TimeoutError)


def test_a_retry_wait_longer_than_the_time_left_gives_the_error_at_once():
    """Retry waits count against the deadline: a Retry-After past it is not waited for."""
    with RawServer(reply(503, {"detail": "overloaded"}, headers={"Retry-After": "20"}), reply(200, RESPONSE)) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).chat("/chat", build_body(SPEC))
    assert str(info.value) == "POST /chat returned 503: overloaded"
    assert info.value.retry_after == 20.0
    assert len(server.requests) == 1


def test_the_per_read_timeout_still_applies_within_the_deadline():
    with RawServer(stream(event("Hel"), then_hang=True)) as server:
        client = HLClient(server.base_url, Secret("deadline-test-key-5d2e"), read_timeout=0.3, deadline=60)
        result = execute(Connection(client, embedded=False), STREAM_SPEC)
    assert str(result.error) == "POST /chat: the stream stalled for 0.3 s (HLSettings.read_timeout); partial output kept"
    assert result.response["data"][0]["output"] == "Hel"


def test_no_deadline_means_only_the_read_timeout_bounds_a_call():
    with RawServer(hang) as server:
        with pytest.raises(HLTimeoutError) as info:
            HLClient(server.base_url, Secret("k-5d2e-0000"), read_timeout=0.3, deadline=None).chat("/chat", build_body(SPEC))
    assert "(HLSettings.read_timeout)" in str(info.value)


def test_calls_within_the_deadline_are_unaffected(server):
    client = HLClient(server.base_url, Secret(server.api_key), deadline=30)
    body = build_body(ChatSpec("chat", SPEC.messages, model_config={**SPEC.model_config, "temperature": 0}))
    for _ in range(3):  # one kept-alive connection, watched and released per call
        response = client.chat("/chat", body)
        assert response["data"][0]["output"] == "m: hello"
    events = list(client.chat_stream("/chat", body))
    assert "".join(e["data"][0]["output"] for e in events) == "m: hello"


@pytest.mark.parametrize("seconds", [0, -1])
def test_deadline_must_be_positive(seconds):
    with pytest.raises(ValueError, match="deadline must be positive or None"):
        HLClient("http://127.0.0.1:1/v4", Secret("k-5d2e-0000"), deadline=seconds)
