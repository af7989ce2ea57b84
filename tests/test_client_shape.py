"""Well-formed JSON of the wrong shape (issue 10, item 1): a ChatResponse or a stream event whose
fields have the wrong types is one typed ``HLServerError`` at the client, never a TypeError,
KeyError or AttributeError somewhere later (assembler, frame). Played by the raw-socket server."""
from __future__ import annotations

import json

import pytest

from hl_notebook.call import execute
from hl_notebook.client import HLClient, RetryPolicy
from hl_notebook.connection import Connection
from hl_notebook.errors import HLServerError, HLStreamError
from hl_notebook.secrets import Secret
from hl_notebook.spec import ChatSpec, build_body
from hl_notebook.stream import StreamAssembler
from rawserver import RawServer, event, reply, stream

SPEC = ChatSpec("chat", ({"role": "user", "content": "hello"},), model_config={"model": "m", "provider": "mock"})
STREAM_SPEC = ChatSpec("chat", SPEC.messages, model_config=SPEC.model_config, stream=True)
GOOD = {"id": "data_raw0", "index": 0, "output": "hi", "raw_output": "hi", "finish_reason": "stop",
        "model_config_id": "config_raw", "output_message": {"role": "assistant", "content": "hi"}}

# (response body, the problem named in the message)
MALFORMED = [
    ({"data": "x"}, "data is not a list"),
    ({"project_id": "pr_raw"}, "data is missing"),
    ({"data": [None]}, "data[0] is not an object"),
    ({"data": [GOOD, "text"]}, "data[1] is not an object"),
    ({"data": [{**GOOD, "index": "0"}]}, "data[0].index is not an integer"),
    ({"data": [{**GOOD, "index": 0.5}]}, "data[0].index is not an integer"),
    ({"data": [{**GOOD, "index": True}]}, "data[0].index is not an integer"),
    ({"data": [{**GOOD, "output": 42}]}, "data[0].output is not a string or null"),
    ({"data": [{**GOOD, "output": ["hi"]}]}, "data[0].output is not a string or null"),
    ({"data": [{**GOOD, "finish_reason": 1}]}, "data[0].finish_reason is not a string or null"),
    ({"data": [{**GOOD, "id": {"a": 1}}]}, "data[0].id is not a string or null"),
    ({"data": [{**GOOD, "output_message": "hi"}]}, "data[0].output_message is not an object or null"),
    ({"data": [GOOD], "usage": "lots"}, "usage is not an object or null"),
    ({"data": [GOOD], "usage": {"total_tokens": "5"}}, "usage.total_tokens is not an integer or null"),
    ({"data": [GOOD], "usage": {"total_tokens": 5.5}}, "usage.total_tokens is not an integer or null"),
]


def client_for(base_url: str) -> HLClient:
    return HLClient(base_url, Secret("shape-test-key-77c1"), retry=RetryPolicy(max_retries=2, backoff_base=0.01))


def sse(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@pytest.mark.parametrize(("body", "problem"), MALFORMED)
def test_a_response_of_the_wrong_shape_is_one_typed_error(body, problem):
    with RawServer(reply(200, body)) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).chat("/chat", build_body(SPEC))
    assert str(info.value) == (f"POST /chat returned 200 with a malformed ChatResponse: {problem}; "
                               "the call may have run on the server")
    assert (info.value.status_code, info.value.endpoint) == (200, "/chat")
    assert len(server.requests) == 1  # not retried: the call may have run


@pytest.mark.parametrize("body", [["not", "a", "response"], "text", 3, None])
def test_json_that_is_not_an_object_is_a_malformed_chat_response(body):
    with RawServer(reply(200, json.dumps(body))) as server:
        with pytest.raises(HLServerError) as info:
            client_for(server.base_url).chat("/chat", build_body(SPEC))
    assert str(info.value).startswith("POST /chat returned 200 with a malformed ChatResponse: the body is not an object")


def test_a_well_formed_response_with_nulls_and_extra_fields_is_accepted():
    body = {"data": [{"index": 0, "output": None, "finish_reason": None, "id": None, "output_message": None,
                      "tool_calls": [{"id": "t"}], "future_field": {"x": [1]}}],
            "usage": None, "provider_responses": [], "new_top_level": 1}
    with RawServer(reply(200, body)) as server:
        assert client_for(server.base_url).chat("/chat", build_body(SPEC)) == body


@pytest.mark.parametrize(("bad_event", "problem"), [(body, problem) for body, problem in MALFORMED
                                                    if problem != "data is missing"])
def test_a_malformed_stream_event_is_a_typed_error_and_the_partial_text_is_kept(bad_event, problem):
    with RawServer(stream(event("Hel"), sse(bad_event), event("lo", finish_reason="stop"))) as server:
        result = execute(Connection(client_for(server.base_url), embedded=False), STREAM_SPEC)
    assert type(result.error) is HLServerError
    assert str(result.error) == (f"POST /chat returned 200 with a malformed stream event: {problem}; "
                                 "partial output kept")
    assert result.response["data"][0]["output"] == "Hel"


# -- the assembler on its own ---------------------------------------------------------------------
@pytest.mark.parametrize(("bad_event", "problem"), [(body, problem) for body, problem in MALFORMED
                                                    if problem != "data is missing"])
def test_assembler_rejects_odd_events_with_a_typed_error(bad_event, problem):
    assembler = StreamAssembler()
    assembler.add({"data": [{"index": 0, "output": "Hel", "finish_reason": None}]})
    with pytest.raises(HLStreamError) as info:
        assembler.add(bad_event)
    assert str(info.value) == f"a malformed stream event: {problem}; partial output kept"
    assert info.value.partial == "Hel"
    assert assembler.response()["data"][0]["output"] == "Hel"  # nothing half-recorded


def test_assembler_ignores_events_without_a_sample():
    assembler = StreamAssembler()
    assert assembler.add({"project_id": "pr_x"}) == (0, "")
    assert assembler.add({"data": []}) == (0, "")
    assert assembler.add({"data": [{"index": 1, "output": "a", "finish_reason": "stop"}]}) == (1, "a")
    assert [s["index"] for s in assembler.response()["data"]] == [1]
