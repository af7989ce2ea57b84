"""A fake Anthropic Messages server: ``POST /v1/messages``, plain and streamed.

Why: lets the Anthropic pass-through be tested over real HTTP. Like the real API it requires
``x-api-key``, ``anthropic-version`` and ``max_tokens``, and refuses unknown fields and system-role
messages. The model name picks the behaviour: ``fail-429`` (Retry-After: 2), ``fail-500``,
``fail-529`` (overloaded), ``fail-404``, ``tool`` (text then a tool_use block), ``cut-stream``
(closes after two deltas), ``error-stream`` (an error event mid-stream); any other model answers
``echo: <last user text>``; ``no-usage`` reports no usage. Made with ``api_key=None`` it is a
keyless local server (as llama.cpp's llama-server is by default). ``hang`` and ``hang-stream`` never
finish (see ``provider_app``).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes import count_words, pieces, provider_app, reply, text_of

FIELDS = {"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences",
          "stream", "metadata", "tools", "tool_choice"}
STOP_REASONS = {"end": "end_turn", "stop": "stop_sequence", "length": "max_tokens"}
FAILURES = {
    "fail-429": (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"),
    "fail-500": (500, "api_error", "Internal server error"),
    "fail-529": (529, "overloaded_error", "Overloaded"),
    "fail-404": (404, "not_found_error", "model: fail-404"),
}


def _error(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "error", "error": {"type": type, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _invalid(request: Request, body: dict[str, Any]) -> str | None:
    """What the real API would reject this request for, if anything."""
    if "anthropic-version" not in request.headers:
        return "anthropic-version: header is required"
    if "max_tokens" not in body:
        return "max_tokens: Field required"
    extra = sorted(set(body) - FIELDS)
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    roles = {m.get("role") for m in body.get("messages") or []}
    if roles - {"user", "assistant"}:
        return f"messages: Unexpected role {sorted(roles - {'user', 'assistant'})[0]!r}"
    return None


def _answer(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, dict[str, int]]:
    """(content blocks, stop_reason, usage) of the reply."""
    messages = body.get("messages") or []
    text, why = reply(messages, body.get("stop_sequences"), body.get("max_tokens"))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}]
    reason = STOP_REASONS[why]
    if body.get("model") == "tool" and body.get("tools"):
        name = body["tools"][0]["name"]
        blocks = [{"type": "text", "text": f"calling {name}"},
                  {"type": "tool_use", "id": "toolu_0", "name": name, "input": {"text": text_of(messages[-1]["content"])}}]
        reason = "tool_use"
    prompt = count_words(text_of(body.get("system")), *(text_of(m.get("content")) for m in messages))
    output = count_words(*(b.get("text") or json.dumps(b.get("input")) for b in blocks))
    return blocks, reason, {"input_tokens": prompt, "output_tokens": output}


def _event(data: dict[str, Any]) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


def _events(body: dict[str, Any]) -> Iterator[str]:
    """message_start, ping, per block start/deltas/stop, message_delta, message_stop."""
    model = body["model"]
    blocks, reason, usage = _answer(body)
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": f"served-{model}", "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    if model == "no-usage":
        del message["usage"]
    yield _event({"type": "message_start", "message": message})
    yield _event({"type": "ping"})
    sent = 0
    for index, block in enumerate(blocks):
        start = {**block, "text": ""} if block["type"] == "text" else {**block, "input": {}}
        yield _event({"type": "content_block_start", "index": index, "content_block": start})
        if block["type"] == "text":
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces(block["text"])]
        else:
            arguments = json.dumps(block["input"])
            half = len(arguments) // 2
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in (arguments[:half], arguments[half:])]
        for delta in deltas:
            if model == "cut-stream" and sent == 2:
                return
            if model == "error-stream" and sent == 1:
                yield _event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                return
            yield _event({"type": "content_block_delta", "index": index, "delta": delta})
            sent += 1
        yield _event({"type": "content_block_stop", "index": index})
    delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
             "usage": {"output_tokens": usage["output_tokens"]}}
    if model == "no-usage":
        del delta["usage"]
    yield _event(delta)
    yield _event({"type": "message_stop"})


def _message(body: dict[str, Any]) -> dict[str, Any]:
    blocks, reason, usage = _answer(body)
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": f"served-{body['model']}",
               "content": blocks, "stop_reason": reason, "stop_sequence": None, "usage": usage}
    if body["model"] == "no-usage":
        del message["usage"]
    return message


def create_app(api_key: str | None) -> FastAPI:
    """The fake; every request body received is appended to ``app.state.requests``."""

    def refuse(request: Request, body: dict[str, Any]) -> Response | None:
        if api_key is not None and request.headers.get("x-api-key") != api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        problem = _invalid(request, body)
        if problem:
            return _error(400, "invalid_request_error", problem)
        if body["model"] in FAILURES:
            status, type, message = FAILURES[body["model"]]
            return _error(status, type, message, {"Retry-After": "2"} if status in (429, 529) else None)
        return None

    return provider_app("/v1/messages", refuse=refuse, answer=_message, events=_events)
