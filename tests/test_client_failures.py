"""HLClient and execute() against failures the real server cannot produce, played byte by byte by a
raw-socket server (requests' tests/testserver idea): refused, silent, truncated, retried, cut streams.

Every script answers with ``Connection: close``, so ``len(server.requests)`` is the number of
attempts the client made: that is how the retry rules (conventions §2.1) are checked.
"""
from __future__ import annotations

import json

import pytest

from hl_notebook.call import execute
from hl_notebook.client import HLClient, RetryPolicy
from hl_notebook.connection import Connection
from hl_notebook.errors import (HLAuthError, HLConnectionError, HLRateLimitError, HLServerError, HLStreamError,
                                HLTimeoutError)
from hl_notebook.secrets import Secret
from hl_notebook.spec import ChatSpec, build_body
from support import closed_port_url
from rawserver import RawServer, drop, event, hang, reply, short_body, stream

FAST = RetryPolicy(max_retries=2, backoff_base=0.01)
KEY = "raw-test-key-4f1c9a"
SPEC = ChatSpec("chat", ({"role": "user", "content": "hello"},), model_config={"model": "m", "provider": "mock"})
STREAM_SPEC = ChatSpec("chat", SPEC.messages, model_config=SPEC.model_config, stream=True)
BODY = build_body(SPEC)
RESPONSE = {"project_id": "pr_raw", "data": [{"id": "data_raw0", "index": 0, "output": "hi", "raw_output": "hi",
                                              "finish_reason": "stop", "model_config_id": "config_raw"}],
            "provider_responses": []}
PROVIDER_ERROR = {"detail": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-4o", "code": 429,
                             "origin": "OpenAI"}}


def client_for(base_url: str, **kwargs) -> HLClient:
    return HLClient(base_url, Secret(KEY), retry=FAST, **kwargs)


def assert_one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text and len(text) <= 300
    assert KEY not in text


def run(client: HLClient, spec: ChatSpec, **kwargs):
    """``execute`` over a connection to ``client`` (no provider keys)."""
    return execute(Connection(client, embedded=False), spec, **kwargs)


def run_stream(server: RawServer, **kwargs):
    deltas: list[tuple[int, str]] = []
    result = run(client_for(server.base_url, **kwargs), STREAM_SPEC,
                     on_delta=lambda call, index, delta: deltas.append((index, delta)))
    return result, deltas


# -- connecting -----------------------------------------------------------------------------------
def test_connection_refused_is_one_line_connection_error():
    base = closed_port_url() + "/v4"  # nothing listens there
    with pytest.raises(HLConnectionError) as info:
        client_for(base).chat("/chat", BODY)
    assert type(info.value) is HLConnectionError
    assert str(info.value).startswith(f"cannot reach {base} (connection refused); is the server running?")
    assert_one_line(info.value)


def test_server_that_never_answers_is_a_timeout_and_not_retried():
    with RawServer(hang) as server:
        with pytest.raises(HLTimeoutError) as info:
            client_for(server.base_url, read_timeout=0.5).chat("/chat", BODY)
    assert isinstance(info.value, TimeoutError)
    assert str(info.value) == f"POST /chat: no answer from {server.base_url} within 0.5 s (HLSettings.read_timeout)"
    assert len(server.requests) == 1  # a read timeout may have run the call: never retried


def test_connection_dropped_after_the_request_is_not_retried():
    with RawServer(drop) as server:
        with pytest.raises(HLConnectionError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    assert type(info.value) is HLConnectionError
    assert "the call may have run on the server, so it is not retried" in str(info.value)
    assert_one_line(info.value)
    assert len(server.requests) == 1


# -- broken bodies --------------------------------------------------------------------------------
@pytest.mark.parametrize("body, content_type", [
    (b'{"project_id": "pr_raw", "data": [{"output": "hal', "application/json"),
    (b"<html><body>502 Bad Gateway</body></html>\n", "text/html"),
    (b"", "application/json"),
])
def test_200_with_an_unreadable_body_is_a_server_error(body, content_type):
    with RawServer(reply(200, body, content_type=content_type)) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    error = info.value
    assert error.status_code == 200 and error.endpoint == "/chat"
    assert str(error).startswith("POST /chat returned 200 with a body that is not JSON")
    assert_one_line(error)
    assert len(server.requests) == 1


def test_unreadable_body_on_a_management_call_is_typed_too():
    with RawServer(reply(200, b"not json", content_type="text/plain")) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).projects()
    assert str(info.value).startswith("GET /projects returned 200 with a body that is not JSON")


def test_execute_keeps_the_unreadable_body_error_on_the_result():
    with RawServer(reply(200, b'{"data": [')) as server:
        result = run(client_for(server.base_url), SPEC)
    assert not result.ok and isinstance(result.error, HLServerError)
    assert result.response is None


def test_body_shorter_than_its_content_length_is_a_dropped_connection():
    with RawServer(short_body(200, 500, b'{"project_id": "pr_raw", "da')) as server:
        with pytest.raises(HLConnectionError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    assert "closed mid-response" in str(info.value)
    assert_one_line(info.value)
    assert len(server.requests) == 1


def test_error_status_with_a_non_json_body_keeps_its_text():
    with RawServer(reply(502, b"<html>\n<h1>Bad   Gateway</h1>\n</html>", content_type="text/html")) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    assert str(info.value) == "POST /chat returned 502: <html> <h1>Bad Gateway</h1> </html>"
    assert len(server.requests) == 1


def test_retryable_status_with_a_cut_body_on_a_stream_request_is_typed():
    with RawServer(short_body(503, 400, b'{"detail": "over')) as server:
        result, _ = run_stream(server)
    assert isinstance(result.error, HLServerError)
    assert result.error.status_code == 503
    assert_one_line(result.error)
    assert len(server.requests) == 3


# -- retries --------------------------------------------------------------------------------------
def test_503_then_200_succeeds_after_one_retry_with_the_same_body():
    with RawServer(reply(503, {"detail": "overloaded"}), reply(200, RESPONSE)) as server:
        response = client_for(server.base_url).chat("/chat", BODY)
    assert response == RESPONSE
    assert len(server.requests) == 2
    assert [r.json() for r in server.requests] == [BODY, BODY]
    assert all(r.headers["x-api-key"] == KEY for r in server.requests)


def test_429_with_retry_after_zero_then_200_succeeds():
    with RawServer(reply(429, {"detail": "slow down"}, headers={"Retry-After": "0"}), reply(200, RESPONSE)) as server:
        response = client_for(server.base_url).chat("/chat", BODY)
    assert response["data"][0]["output"] == "hi"
    assert len(server.requests) == 2


def test_429_forever_is_a_rate_limit_error_carrying_retry_after():
    with RawServer(reply(429, PROVIDER_ERROR, headers={"Retry-After": "0"})) as server:
        with pytest.raises(HLRateLimitError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    assert str(info.value) == "POST /chat returned 429: OpenAI: Rate limit reached for gpt-4o"
    assert info.value.retry_after == 0.0
    assert len(server.requests) == FAST.max_retries + 1


def test_500_is_a_server_error_and_a_chat_post_is_not_retried():
    with RawServer(reply(500, {"detail": "boom"}), reply(200, RESPONSE)) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    assert str(info.value) == "POST /chat returned 500: boom"
    assert info.value.status_code == 500 and info.value.body == {"detail": "boom"}
    assert len(server.requests) == 1


def test_503_forever_gives_up_after_max_retries():
    with RawServer(reply(503, {"detail": "overloaded"})) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    assert str(info.value) == "POST /chat returned 503: overloaded"
    assert len(server.requests) == FAST.max_retries + 1


def test_401_is_not_retried_and_the_key_stays_out_of_the_error():
    with RawServer(reply(401, {"detail": f"invalid key {KEY}"})) as server:
        with pytest.raises(HLAuthError) as info:
            client_for(server.base_url).chat("/chat", BODY)
    assert str(info.value) == "POST /chat returned 401: invalid key ***"
    assert KEY not in json.dumps(info.value.body)
    assert len(server.requests) == 1


def test_idempotency_key_is_sent_on_the_post_and_repeated_on_every_retry():
    with RawServer(reply(503, {"detail": "overloaded"}), reply(429, {"detail": "slow"}, headers={"Retry-After": "0"}),
                   reply(200, RESPONSE)) as server:
        client_for(server.base_url).chat("/chat", BODY, idempotency_key="call-7f3a")
    assert [r.headers.get("idempotency-key") for r in server.requests] == ["call-7f3a"] * 3


def test_no_idempotency_key_no_header():
    with RawServer(reply(200, RESPONSE)) as server:
        client_for(server.base_url).chat("/chat", BODY)
    assert "idempotency-key" not in server.requests[0].headers


def test_idempotency_key_on_a_streamed_call_and_its_retries():
    with RawServer(reply(503, {"detail": "overloaded"}), stream(event("ok", finish_reason="stop"))) as server:
        events = list(client_for(server.base_url).chat_stream("/chat", BODY, idempotency_key="s-9"))
    assert [e["data"][0]["output"] for e in events] == ["ok"]
    assert [r.headers.get("idempotency-key") for r in server.requests] == ["s-9", "s-9"]


# -- streams --------------------------------------------------------------------------------------
def test_stream_assembles_deltas_and_sends_stream_true():
    with RawServer(stream(event("Hel"), event("lo"), event(" there", finish_reason="stop"))) as server:
        result, deltas = run_stream(server)
    assert result.ok, result.error
    assert deltas == [(0, "Hel"), (0, "lo"), (0, " there")]
    assert result.response["data"][0]["output"] == "Hello there"
    assert result.response["data"][0]["finish_reason"] == "stop"
    assert server.requests[0].json()["stream"] is True


def test_stream_cut_midway_keeps_the_partial_text():
    with RawServer(stream(event("Hel"), event("lo"), end=False)) as server:
        result, deltas = run_stream(server)
    assert isinstance(result.error, HLStreamError)
    assert str(result.error).startswith("POST /chat: the stream broke (")
    assert result.error.partial == "Hello"
    sample = result.response["data"][0]
    assert sample["output"] == "Hello" and sample["finish_reason"] is None
    assert deltas == [(0, "Hel"), (0, "lo")]
    assert len(server.requests) == 1


def test_stream_error_event_keeps_the_partial_text_and_the_provider_message():
    error_event = b"data: " + json.dumps(PROVIDER_ERROR).encode() + b"\n\n"
    with RawServer(stream(event("Hel"), error_event, event("never sent", finish_reason="stop"))) as server:
        result, _ = run_stream(server)
    assert isinstance(result.error, HLStreamError)
    assert str(result.error) == ("POST /chat: the stream failed: OpenAI: Rate limit reached for gpt-4o; "
                                 "partial output kept")
    assert result.error.partial == "Hel"
    assert result.response["data"][0]["output"] == "Hel"


def test_stream_that_ends_before_the_final_event_is_a_stream_error():
    with RawServer(stream(event("Hel"), event("lo"))) as server:  # clean end, no finish_reason
        result, _ = run_stream(server)
    assert isinstance(result.error, HLStreamError)
    assert "ended before every sample finished" in str(result.error)
    assert result.response["data"][0]["output"] == "Hello"


def test_stalled_stream_is_a_timeout_with_the_partial_text_kept():
    with RawServer(stream(event("Hel"), then_hang=True)) as server:
        result, _ = run_stream(server, read_timeout=0.5)
    assert isinstance(result.error, HLTimeoutError)
    assert str(result.error) == ("POST /chat: the stream stalled for 0.5 s (HLSettings.read_timeout); "
                                 "partial output kept")
    assert result.response["data"][0]["output"] == "Hel"
    assert len(server.requests) == 1


def test_crlf_split_across_writes_is_parsed():
    first = event("Hello", eol=b"\r\n")
    line, blank = first[:-3], first[-3:]  # b'data: {...}\r' and b'\n\r\n', written separately
    assert line.endswith(b"}\r") and blank == b"\n\r\n"
    with RawServer(stream(line, blank, event(" world", finish_reason="stop", eol=b"\r\n"))) as server:
        result, deltas = run_stream(server)
    assert result.ok, result.error
    assert deltas == [(0, "Hello"), (0, " world")]
    assert result.response["data"][0]["output"] == "Hello world"


def test_interleaved_samples_and_done_sentinel_over_the_wire():
    spec = ChatSpec("chat", SPEC.messages, model_config=SPEC.model_config, stream=True, num_samples=2)
    pieces = (event("a", 0), event("x", 1), event("b", 0, "stop"), b"data: [DONE]\n\n", event("y", 1, "length"))
    with RawServer(stream(*pieces)) as server:
        result = run(client_for(server.base_url), spec)
    assert result.ok, result.error
    assert [(s["index"], s["output"], s["finish_reason"]) for s in result.response["data"]] == [
        (0, "ab", "stop"), (1, "xy", "length")]

