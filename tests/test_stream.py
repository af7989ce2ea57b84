"""Pure tests of the SSE line splitter (``wire.sse_data``, shared with the server), the event reader and the stream assembler (spec §7, conventions pitfall 8): any chunking
of the same bytes gives the same events, and interleaved samples are rebuilt per index."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hl_notebook.stream import StreamAssembler, sse_events
from hl_notebook.wire import sse_data as sse_bytes


def sse_data(chunks):
    """The shared splitter's payloads, decoded as the client decodes them."""
    return [payload.decode("utf-8", "replace") for payload in sse_bytes(chunks)]


def chat_event(output: str | None, index: int = 0, finish_reason: str | None = None, **envelope) -> dict:
    return {"project_id": "pr_x", **envelope, "data": [{"id": f"data_{index}", "index": index, "output": output,
                                                        "finish_reason": finish_reason}]}


# A stream mixing every line shape the reader must handle; EXPECTED_DATA is what it must yield.
WIRE = b"".join([
    b": keep-alive comment\n\n",
    b"data: " + json.dumps(chat_event("H\u00e9llo ", 0), ensure_ascii=False).encode() + b"\r\n\r\n",
    b"event: ignored\nid: 7\nretry: 100\n",
    b"data:" + json.dumps(chat_event("\u6f22\u5b57 \U0001F600", 1)).encode() + b"\n\n",  # no space after "data:"
    b"data: [DONE]\n\n",
    b"data:  two spaces\r\n\r\n",
    b"not-data: {\"x\": 1}\n",
    b"data: " + json.dumps(chat_event("bye", 0, "stop"), ensure_ascii=False).encode() + b"\n\n",
    b"data: 42\n\n",
    b"data: {\"unterminated\": \n\n",
])
EXPECTED_DATA = [
    json.dumps(chat_event("H\u00e9llo ", 0), ensure_ascii=False),
    json.dumps(chat_event("\u6f22\u5b57 \U0001F600", 1)),
    "[DONE]",
    " two spaces",  # only one space after the colon belongs to the field syntax
    json.dumps(chat_event("bye", 0, "stop"), ensure_ascii=False),
    "42",
    '{"unterminated": ',
]
EXPECTED_EVENTS = [chat_event("H\u00e9llo ", 0), chat_event("\u6f22\u5b57 \U0001F600", 1), chat_event("bye", 0, "stop")]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]  # empty chunks included on purpose


def test_whole_stream_in_one_chunk():
    assert list(sse_data([WIRE])) == EXPECTED_DATA
    assert list(sse_events([WIRE])) == EXPECTED_EVENTS


def test_one_byte_at_a_time():
    chunks = [WIRE[i:i + 1] for i in range(len(WIRE))]
    assert list(sse_data(chunks)) == EXPECTED_DATA
    assert list(sse_events(chunks)) == EXPECTED_EVENTS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=40))
def test_any_chunking_gives_the_same_events(cuts):
    chunks = split(WIRE, cuts)
    assert b"".join(chunks) == WIRE
    assert list(sse_data(chunks)) == EXPECTED_DATA
    assert list(sse_events(chunks)) == EXPECTED_EVENTS


@pytest.mark.parametrize("chunks", [
    [b"data: {\"a\": 1}\r", b"\n\r\n"],          # CRLF split between chunks (pitfall 8)
    [b"data: {\"a\": 1}\r\n", b"\r\n"],
    [b"data: {\"a\": 1}", b"\r\n\r\n"],
    [b"da", b"ta", b": {\"a\"", b": 1}\r\n\r\n"],
    [b"data: {\"a\": 1}\n\n"],                   # LF only
    [b"data:{\"a\": 1}\r\n\r\n"],                # no space after the colon
])
def test_line_endings_and_field_spacing(chunks):
    assert list(sse_data(chunks)) == ['{"a": 1}']
    assert list(sse_events(chunks)) == [{"a": 1}]


def test_carriage_returns_never_reach_the_payload():
    payloads = list(sse_data([b"data: x\r\n", b"data: y\r", b"\n", b"data: z\r\n\r\n"]))
    assert payloads == ["x", "y", "z"]


def test_last_line_without_a_newline_is_still_read():
    assert list(sse_data([b"data: {\"a\": 1}\n\n", b"data: {\"b\": 2}"])) == ['{"a": 1}', '{"b": 2}']


def test_non_json_and_non_object_payloads_are_skipped():
    wire = b"data: [DONE]\n\ndata: null\n\ndata: [1, 2]\n\ndata: \"text\"\n\ndata: {\"ok\": true}\n\n"
    assert list(sse_events([wire])) == [{"ok": True}]


def test_multibyte_characters_split_across_chunks():
    wire = "data: {\"output\": \"caf\u00e9 \U0001F600\"}\n\n".encode()
    cut = wire.index(b"\xf0") + 2  # inside the 4-byte emoji
    assert list(sse_events([wire[:cut], wire[cut:]])) == [{"output": "caf\u00e9 \U0001F600"}]


def test_invalid_utf8_does_not_break_the_stream():
    # the SSE standard decodes with replacement; one bad byte must not turn into a raw UnicodeDecodeError
    chunks = [b"data: {\"output\": \"bad \xff byte\"}\n\n", b"data: {\"output\": \"next\"}\n\n"]
    assert list(sse_events(chunks)) == [{"output": "bad \ufffd byte"}, {"output": "next"}]


# -- StreamAssembler ------------------------------------------------------------------------------
def test_interleaved_samples_are_assembled_per_index():
    assembler = StreamAssembler()
    events = [chat_event("The", 1), chat_event("A", 0), chat_event(" cat", 1), chat_event(" dog", 0),
              chat_event(" sat.", 1, "stop", usage={"total_tokens": 9}), chat_event(" ran ", 0, "length")]
    returned = [assembler.add(e) for e in events]
    assert returned == [(1, "The"), (0, "A"), (1, " cat"), (0, " dog"), (1, " sat."), (0, " ran ")]
    response = assembler.response()
    assert [(s["index"], s["output"], s["raw_output"], s["finish_reason"]) for s in response["data"]] == [
        (0, "A dog ran", "A dog ran ", "length"), (1, "The cat sat.", "The cat sat.", "stop")]
    assert [s["output_message"] for s in response["data"]] == [
        {"role": "assistant", "content": "A dog ran "}, {"role": "assistant", "content": "The cat sat."}]
    assert response["project_id"] == "pr_x"
    assert response["provider_responses"] == []
    assert assembler.partial_text() == "A dog ran \nThe cat sat."


def test_final_event_fields_win_over_the_first_event():
    assembler = StreamAssembler()
    assembler.add({"data": [{"index": 0, "output": "hi", "id": "data_a", "finish_reason": None}]})
    assembler.add({"project_id": "pr_y", "usage": {"total_tokens": 3},
                   "data": [{"index": 0, "output": "!", "id": "data_a", "finish_reason": "stop",
                             "output_message": {"role": "assistant", "content": "hi!", "name": None}}]})
    response = assembler.response()
    assert response["usage"] == {"total_tokens": 3} and response["project_id"] == "pr_y"
    assert response["data"][0]["output_message"] == {"role": "assistant", "content": "hi!", "name": None}
    assert response["data"][0]["output"] == "hi!"


def test_unfinished_sample_keeps_its_partial_text():
    assembler = StreamAssembler()
    for e in (chat_event("one", 0), chat_event(" two", 0, "stop"), chat_event("par", 1), chat_event(None, 1),
              chat_event("tial", 1)):
        assembler.add(e)
    response = assembler.response()
    assert [(s["output"], s["finish_reason"]) for s in response["data"]] == [("one two", "stop"), ("partial", None)]
    assert set(assembler.finals) == {0}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=5), min_size=1, max_size=4), st.data())
def test_any_interleaving_rebuilds_each_sample(samples, data):
    """Samples stream independently (spec §7); whatever order their events arrive in, each is rebuilt."""
    queues = {i: [chat_event(d, i, "stop" if n == len(deltas) - 1 else None) for n, d in enumerate(deltas)]
              for i, deltas in enumerate(samples)}
    assembler = StreamAssembler()
    while queues:
        index = data.draw(st.sampled_from(sorted(queues)))
        assembler.add(queues[index].pop(0))
        if not queues[index]:
            del queues[index]
    response = assembler.response()
    assert [s["raw_output"] for s in response["data"]] == ["".join(deltas) for deltas in samples]
    assert [s["index"] for s in response["data"]] == list(range(len(samples)))
    assert all(s["finish_reason"] == "stop" for s in response["data"])
