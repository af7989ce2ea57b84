"""A fake OpenAI Chat Completions server: ``POST /v1/chat/completions``, plain and streamed.

Why: lets the OpenAI pass-through be tested over real HTTP. The model name picks the behaviour:
``fail-429`` (429, Retry-After: 2), ``fail-500``, ``fail-404`` (unknown model), ``tool`` (calls the
first tool), ``cut-stream`` (closes after two deltas), ``error-stream`` (an error event mid-stream),
``no-usage`` (never reports usage), ``ignore-n`` (one choice whatever ``n`` asks, as llama-cpp-python's
server answers; ``ignore-n-no-usage`` also reports no usage), ``crlf`` (CRLF line ends), ``nan-usage`` (usage counts are
``NaN``/``Infinity``, and the text holds a lone surrogate escape: JSON Python reads, but cannot
write back), ``number-delta`` (a stream delta whose content is a number); any other model answers
``echo: <last user text>``. A wrong key is echoed in the 401 message, to exercise redaction; made
with ``api_key=None`` it is a keyless local server that takes any request. ``hang`` and ``hang-stream``
never finish (see ``provider_app``).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes import count_words, pieces, provider_app, reply, text_of

FINISH = {"end": "stop", "stop": "stop", "length": "length"}


def _error(status: int, message: str, type: str, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _answer(body: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]] | None]:
    """(text, finish_reason, tool_calls) of every choice."""
    messages = body.get("messages") or []
    if body.get("model") == "tool" and body.get("tools"):
        arguments = json.dumps({"text": text_of(messages[-1].get("content"))})
        call = {"id": "call_0", "type": "function",
                "function": {"name": body["tools"][0]["function"]["name"], "arguments": arguments}}
        return "", "tool_calls", [call]
    text, why = reply(messages, body.get("stop"), body.get("max_tokens"))
    if body.get("model") == "nan-usage":
        text += " \ud800"
    return text, FINISH[why], None


def _choices(body: dict[str, Any]) -> int:
    return 1 if "ignore-n" in body.get("model", "") else body.get("n", 1)


def _usage(body: dict[str, Any], text: str, calls: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if "no-usage" in body.get("model", ""):
        return None
    prompt = count_words(*(text_of(m.get("content")) for m in body.get("messages") or []))
    completion = _choices(body) * count_words(text, *(c["function"]["arguments"] for c in calls or []))
    if body.get("model") == "nan-usage":
        return {"prompt_tokens": float("nan"), "completion_tokens": float("inf"), "total_tokens": float("-inf")}
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _dumps(data: Any) -> str:
    """JSON as a careless upstream writes it: NaN/Infinity as bare words, surrogates as escapes."""
    return json.dumps(data, allow_nan=True)


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    text, finish, calls = _answer(body)
    message = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish}
               for i in range(_choices(body))]
    answer = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": f"served-{body['model']}",
              "choices": choices}
    usage = _usage(body, text, calls)
    return answer if usage is None else {**answer, "usage": usage}


def _chunks(body: dict[str, Any]) -> Iterator[str]:
    """The SSE body: per-choice chunks interleaved, finish chunks, usage chunk, ``[DONE]``."""
    model, n = body["model"], _choices(body)
    include_usage = (body.get("stream_options") or {}).get("include_usage") and "no-usage" not in model
    end = "\r\n" if model == "crlf" else "\n"
    text, finish, calls = _answer(body)

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": f"served-{model}",
                "choices": choices}
        if include_usage:
            data["usage"] = usage
        return f"data: {_dumps(data)}{end}{end}"

    def delta(i: int, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return chunk([{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    for i in range(n):
        yield delta(i, {"role": "assistant", "content": ""})
    for count, piece in enumerate(pieces(text)):
        if model == "cut-stream" and count == 2:
            return
        if model == "number-delta" and count == 1:
            piece = 12345  # type: ignore[assignment]
        if model == "error-stream" and count == 1:
            yield f'data: {json.dumps({"error": {"message": "upstream fell over", "type": "server_error"}})}{end}{end}'
            return
        for i in range(n):
            yield delta(i, {"content": piece})
    for call in calls or []:
        head = {"index": 0, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        for i in range(n):
            yield delta(i, {"tool_calls": [head]})
            for part in (arguments[:half], arguments[half:]):
                yield delta(i, {"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
    for i in range(n):
        yield delta(i, {}, finish)
    if include_usage:
        yield chunk([], _usage(body, text, calls))
    yield f"data: [DONE]{end}{end}"


FAILURES = {
    "fail-429": (429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", {"Retry-After": "2"}),
    "fail-500": (500, "The server had an error while processing your request.", "server_error", None, None),
    "fail-404": (404, "The model `fail-404` does not exist", "invalid_request_error", "model_not_found", None),
}


def create_app(api_key: str | None) -> FastAPI:
    """The fake; every request body received is appended to ``app.state.requests``."""

    def refuse(request: Request, body: dict[str, Any]) -> Response | None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if api_key is not None and given != api_key:
            return _error(401, f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key")
        if body.get("model") in FAILURES:
            return _error(*FAILURES[body["model"]])
        return None

    def answer(body: dict[str, Any]) -> Response:
        return Response(_dumps(_completion(body)), media_type="application/json")

    return provider_app("/v1/chat/completions", refuse=refuse, answer=answer, events=_chunks)
