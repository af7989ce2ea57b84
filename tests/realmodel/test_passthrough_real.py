"""The pass-through providers against real llama.cpp servers serving SmolLM2-135M, with no key.

Why: the issue-16 defects came from real servers' quirks (pitfall 21) — llama-cpp-python's server
ignores ``n`` and sends no usage in streams; llama.cpp's llama-server honours ``n`` but counts usage
for one choice, and speaks the Anthropic Messages API at a base URL without ``/v1``.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any

import pytest

import hl_notebook
from support import closed_port_url
from tests.realmodel.conftest import ModelServer, Relay, chat_body, start_llama_cpp_python
from tests.server.helpers import parse_events, unique

SOMETHING = "Name three colours."
TEXT = re.compile(rb'"content": ?"[^"]')  # a streamed chunk that carries text


def project_logs(server: Any, project: str) -> list[dict[str, Any]]:
    found = [p["id"] for p in server.get("/projects", params={"size": 1000}).json()["records"] if p["name"] == project]
    return server.get("/logs", params={"project_id": found[0], "size": 100}).json()["records"] if found else []


def answer(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = server.post("/chat", body)
    assert response.status_code == 200, response.text
    return response.json()


def finals(server: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The final event of each sample of a streamed call."""
    return [e for e in parse_events(server.post("/chat", body)) if e["data"][0]["finish_reason"]]


# --- llama-cpp-python's server (``python -m llama_cpp.server``), provider openai ---------------------

@pytest.fixture(scope="module")
def upstream(llama_cpp_python_server: ModelServer) -> str:
    assert "OPENAI_API_KEY" not in os.environ  # keyless: nothing in the environment, nothing in the body
    return llama_cpp_python_server.base_url


def test_every_sample_is_a_row_although_the_server_ignores_n(server: Any, upstream: str) -> None:
    project = unique("lcp-samples")
    body = chat_body(upstream, "openai", project=project, num_samples=3, temperature=0.8, max_tokens=12)
    response = answer(server, body)
    assert [d["index"] for d in response["data"]] == [0, 1, 2] and all(d["output"] for d in response["data"])
    responses = response["provider_responses"]
    assert [len(r["choices"]) for r in responses] == [1, 1, 1]  # n=3 answered with one choice: two n=1 calls more
    assert response["usage"]["prompt_tokens"] == sum(r["usage"]["prompt_tokens"] for r in responses)
    assert response["usage"]["generation_tokens"] == sum(r["usage"]["completion_tokens"] for r in responses)
    assert sorted(r["index"] for r in project_logs(server, project)) == [0, 1, 2]


def test_streamed_samples_arrive_and_usage_is_null_as_the_server_sends_none(server: Any, upstream: str) -> None:
    body = chat_body(upstream, "openai", project=unique("lcp-stream"), num_samples=2, stream=True,
                     messages=[{"role": "user", "content": SOMETHING}])
    events = finals(server, body)
    assert sorted(e["data"][0]["index"] for e in events) == [0, 1]
    assert all(e["data"][0]["output_message"]["content"] for e in events)
    assert all(e["usage"] is None for e in events)  # stream_options.include_usage is ignored: no guess either
    # one provider response per request (n was ignored); this server echoes the model name it was sent
    assert [r["model"] for r in events[-1]["provider_responses"]] == ["smollm2", "smollm2"]


def test_stop_cuts_the_answer_and_max_tokens_ends_it(server: Any, upstream: str) -> None:
    messages = [{"role": "user", "content": SOMETHING}]
    base = answer(server, chat_body(upstream, "openai", project=unique("lcp-stop"), messages=messages, max_tokens=32))
    text = base["data"][0]["raw_output"]
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]
    cut = answer(server, chat_body(upstream, "openai", project=unique("lcp-stop"), messages=messages, max_tokens=32,
                                   stop=stop))
    assert cut["data"][0]["raw_output"] == text[: text.index(stop)]
    assert cut["data"][0]["finish_reason"] == "stop"
    short = answer(server, chat_body(upstream, "openai", project=unique("lcp-len"), messages=messages, max_tokens=4))
    assert short["data"][0]["finish_reason"] == "length" and short["usage"]["generation_tokens"] == 4


def test_same_request_at_temperature_0_gives_the_same_answer(server: Any, upstream: str) -> None:
    body = chat_body(upstream, "openai", project=unique("lcp-seed"), seed=7, max_tokens=16,
                     messages=[{"role": "user", "content": "Say something about the sea."}])
    outputs = [answer(server, body)["data"][0]["output"] for _ in range(3)]
    assert outputs[0] and len(set(outputs)) == 1, outputs


def test_model_server_killed_mid_sweep_leaves_error_rows_with_partial_text(point: Any, server: Any,
                                                                         gguf: Any) -> None:
    """Call 2 of 3 is cut mid-stream (SIGKILL of the model server); call 3 finds nothing listening:
    every call is a row, the cut one keeps its text, and each failed call is one log, not retried."""
    point(server)
    process = start_llama_cpp_python(gguf)
    seen = {"answers": 0}
    killed = threading.Event()

    def on_upstream(data: bytes) -> None:
        seen["answers"] += data.count(b"HTTP/1.1 200")
        if seen["answers"] >= 2 and TEXT.search(data) and not killed.is_set():
            killed.set()
            relay.close()
            process.process.kill()

    relay = Relay(process.base_url, on_upstream)
    project = unique("lcp-killed")
    try:
        frame = hl_notebook.sweep("user: Tell a long story about {{topic}}.", inputs=[{"topic": t} for t in
                                                                                      ("a cat", "a ship", "a tree")],
                                  model="smollm2", provider="openai", temperature=0, max_tokens=200, stream=True,
                                  concurrency=1, progress=False, project=project,
                                  other={"base_url": f"http://127.0.0.1:{relay.port}/v1"})
    finally:
        relay.close()
        process.stop()
    assert killed.is_set()
    assert list(frame["inputs.topic"]) == ["a cat", "a ship", "a tree"]
    assert frame["error"].isna().tolist() == [True, False, False]
    assert frame["output"][0] and frame["output"][1]  # the cut stream's text is kept beside its error
    assert "unreachable" in frame["error"][2]
    logs = project_logs(server, project)
    assert len(logs) == 3  # one per call: the 502s are not retried
    assert [r["error"] and r["error"]["type"] for r in logs] == [None, "bad_gateway", "upstream_unreachable"]
    assert frame["output"][1].strip() in logs[1]["output"]


def test_unreachable_model_server_is_one_log_per_call(point: Any, server: Any, gguf: Any) -> None:
    point(server)
    project = unique("lcp-down")
    frame = hl_notebook.sweep("user: hi {{n}}", inputs=[{"n": i} for i in range(3)], model="smollm2",
                              provider="openai", progress=False, project=project,
                              other={"base_url": closed_port_url() + "/v1"})
    assert frame["error_type"].tolist() == ["HLServerError"] * 3
    assert [r["error"]["type"] for r in project_logs(server, project)] == ["upstream_unreachable"] * 3


# --- llama.cpp's llama-server: provider anthropic (Messages API) and openai (honours n) -----------

def test_anthropic_pass_through_against_llama_server(server: Any, llama_server: Any) -> None:
    base = llama_server.base_url  # Anthropic base URLs do not end in /v1
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": SOMETHING}]
    response = answer(server, chat_body(base, "anthropic", project=unique("ls-anthropic"), num_samples=2,
                                        messages=messages, max_tokens=24))
    assert [d["index"] for d in response["data"]] == [0, 1] and all(d["output"] for d in response["data"])
    assert len(response["provider_responses"]) == 2
    usage = response["usage"]
    assert usage["generation_tokens"] == sum(r["usage"]["output_tokens"] for r in response["provider_responses"])
    events = finals(server, chat_body(base, "anthropic", project=unique("ls-anthropic"), stream=True,
                                      messages=messages, max_tokens=24))
    assert events[0]["data"][0]["output_message"]["content"] and events[0]["usage"]["generation_tokens"] > 0
    short = answer(server, chat_body(base, "anthropic", project=unique("ls-anthropic"), messages=messages, max_tokens=3))
    assert short["data"][0]["finish_reason"] == "length"


def test_openai_pass_through_against_llama_server_gets_n_choices(server: Any, llama_server: Any) -> None:
    response = answer(server, chat_body(llama_server.base_url + "/v1", "openai", project=unique("ls-openai"),
                                        num_samples=3, temperature=0.8, max_tokens=12))
    assert [d["index"] for d in response["data"]] == [0, 1, 2]
    (reported,) = response["provider_responses"]  # n honoured: one request
    assert len(reported["choices"]) == 3
    assert reported["model"].endswith(".gguf")  # it names the weights it serves: the frame's upstream_model
    # passed on as reported: llama-server's completion_tokens is one choice's (docs/v4-decisions.md)
    assert response["usage"]["generation_tokens"] == reported["usage"]["completion_tokens"]
