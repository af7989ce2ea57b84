"""Pass-through to the OpenAI Chat Completions API (spec §5 mapping, §8 errors).

Why: ``provider: "openai"`` calls go to a real (or OpenAI-compatible) endpoint and come back as the
provider contract of ``base.py``. The HTTP plumbing (``Upstream``) is ``upstream.py``'s.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

from hl_notebook.server.providers.base import Generation, ProviderCall, ProviderResult, StreamDelta, StreamUsage
from hl_notebook.server.providers.upstream import (
    DEFAULT_UPSTREAMS, Upstream, Upstreams, count, extra_params, gather, public_url, read_timeout, resolve_base,
    resolve_key, total,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call"}  # spec §6 spelling


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    keep = ("role", "content", "name", "tool_calls", "tool_call_id")
    return {k: message[k] for k in keep if message.get(k) is not None}


def _route_hint(base: str) -> str:
    """What to say when ``{base}/chat/completions`` is no endpoint: the /v1 rule, and the likely fix."""
    rule = "OpenAI-compatible base URLs end in /v1"
    if base.endswith("/v1/v1"):
        return f"{rule} (once): try other.base_url={public_url(base[:-3])}"
    if not base.endswith("/v1"):
        return f"{rule}: try other.base_url={public_url(base)}/v1"
    return f"{rule}; is other.base_url the server's API root?"


@dataclass
class _StreamSummary:
    """What each streamed request of one call reported besides text (usage, model, ids)."""

    prompt: list[int | None] = field(default_factory=list)
    generated: list[int | None] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)


def _merge_tool_call(calls: dict[int, dict[str, Any]], part: dict[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the call at its ``index``."""
    call = calls.setdefault(part.get("index", len(calls)),
                            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if part.get("id"):
        call["id"] = part["id"]
    function = part.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


class OpenAIProvider:
    """``provider: "openai"``: the rendered call sent as-is to ``{base}/chat/completions``.

    Base URL: ``other.base_url``, else ``OPENAI_BASE_URL``, else api.openai.com. Key: the body's
    ``provider_api_keys.openai``, else ``OPENAI_API_KEY``; it only ever travels in the header, and
    at another base URL (a local server) none is needed: then no ``Authorization`` is sent.
    Keys in ``other`` that are not ours are added to the body (they never replace our fields).

    Samples: one request with ``n``. An upstream that returns fewer choices (llama-cpp-python's
    server ignores ``n``) is asked for each missing one in an ``n=1`` request: at once when not
    streaming, one after another when streaming (that server serves one request at a time and a
    new request cuts a running stream). Usage is the sum over every request made, as each
    reported it (a server that counts one choice of ``n``, like llama.cpp's ``llama-server``, is
    not corrected); if any request reported none (llama-cpp-python's streams), it is None.
    """

    origin = "OpenAI"

    def __init__(self, upstreams: Upstreams = DEFAULT_UPSTREAMS) -> None:
        self.upstreams = upstreams

    def complete(self, call: ProviderCall) -> ProviderResult:
        upstream, body = self._upstream(call), self._body(call)
        first = self._post(upstream, body)
        generations = sorted((self._generation(c) for c in first.get("choices") or []), key=lambda g: g.index)
        generations = generations[: call.num_samples]
        missing = call.num_samples - len(generations)
        single = {**body, "n": 1}
        extra = gather([lambda: self._post(upstream, single)] * missing) if missing else []
        for data in extra:
            choices = data.get("choices") or []
            if not choices:
                raise upstream.error(f"{self.origin} answered without a choice")
            generations.append(self._generation(choices[0]))
        for index, generation in enumerate(generations):
            generation.index = index
        usages = [data.get("usage") or {} for data in (first, *extra)]
        return ProviderResult(
            generations=generations,
            prompt_tokens=total([count(u, "prompt_tokens") for u in usages]),
            generation_tokens=total([count(u, "completion_tokens") for u in usages]),
            provider_request=upstream.redact(body),
            provider_responses=[upstream.redact(data) for data in (first, *extra)],
        )

    @staticmethod
    def _post(upstream: Upstream, body: dict[str, Any]) -> dict[str, Any]:
        return upstream.fetch(body)

    def stream(self, call: ProviderCall) -> Iterator[StreamDelta | StreamUsage]:
        upstream = self._upstream(call)
        body = {**self._body(call), "stream": True, "stream_options": {"include_usage": True}}
        summary = _StreamSummary()
        received = yield from self._stream_request(upstream, body, list(range(call.num_samples)), summary)
        missing = [index for index in range(call.num_samples) if index not in received]
        for index in missing:  # the upstream ignored n: one request per missing sample, in turn
            yield from self._stream_request(upstream, {**body, "n": 1}, [index], summary)
        yield StreamUsage(total(summary.prompt), total(summary.generated), upstream.redact(body),
                          [upstream.redact(r) for r in summary.responses])

    def _stream_request(self, upstream: Upstream, body: dict[str, Any], indices: list[int],
                        summary: "_StreamSummary") -> Iterator[StreamDelta]:
        """One streamed request whose choice ``i`` is sample ``indices[i]``; returns the samples it
        finished. A choice that began and did not finish is a cut-off stream (ProviderError)."""
        outputs: dict[int, list[str]] = defaultdict(list)
        tool_calls: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
        started: set[int] = set()
        finished: set[int] = set()
        usage: dict[str, Any] = {}
        last: dict[str, Any] = {}
        with upstream.post(body, stream=True) as response:
            for event in upstream.events(response):
                usage = event.get("usage") or usage
                last = event
                for choice in event.get("choices") or []:
                    position = choice.get("index", 0)
                    if not isinstance(position, int) or not 0 <= position < len(indices):
                        continue
                    started.add(position)
                    delta = self._delta(choice, outputs, tool_calls)
                    if delta is None:
                        continue
                    delta.index = indices[position]
                    if delta.finish_reason:
                        finished.add(position)
                    yield delta
        if not started or started - finished:
            raise upstream.cut_off()
        upstream.settle(body, usage)
        summary.prompt.append(count(usage, "prompt_tokens"))
        summary.generated.append(count(usage, "completion_tokens"))
        summary.responses.append({k: v for k, v in last.items() if k != "choices"})
        return {indices[position] for position in finished}

    def _upstream(self, call: ProviderCall) -> Upstream:
        other = call.config.get("other") or {}
        base = resolve_base(other, "OPENAI_BASE_URL", DEFAULT_BASE_URL)
        key = resolve_key(call, "openai", "OPENAI_API_KEY", self.origin, required=base == DEFAULT_BASE_URL)
        return Upstream(f"{base}/chat/completions", {"Authorization": f"Bearer {key}"} if key else {}, key,
                        self.origin, read_timeout(other, self.upstreams.timeout), route_hint=_route_hint(base),
                        upstreams=self.upstreams, limit=self.upstreams.limit_for("openai", key))

    @staticmethod
    def _body(call: ProviderCall) -> dict[str, Any]:
        """The Chat Completions body, as in the S4 example of spec §5 (``max_tokens`` only if != -1)."""
        config = call.config
        body: dict[str, Any] = {
            "messages": [_wire_message(m) for m in call.messages],
            "model": config["model"],
            "n": call.num_samples,
        }
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "stop", "seed"):
            if config.get(name) is not None:
                body[name] = config[name]
        if config.get("max_tokens", -1) != -1:
            body["max_tokens"] = config["max_tokens"]
        if call.user:
            body["user"] = call.user
        tools = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")
                                                  if t.get(k) is not None}}
                 for t in config.get("tools") or []]
        if tools:
            body["tools"] = tools
        if tools or call.tool_choice is not None:
            body["tool_choice"] = call.tool_choice if call.tool_choice is not None else "auto"
        response_format = call.response_format or config.get("response_format")
        if response_format:
            body["response_format"] = response_format
        for name, value in extra_params(config.get("other") or {}).items():
            body.setdefault(name, value)
        return body

    @staticmethod
    def _generation(choice: dict[str, Any]) -> Generation:
        message = choice.get("message") or {}
        reason = choice.get("finish_reason")
        return Generation(index=choice.get("index", 0), text=message.get("content") or "",
                          finish_reason=FINISH_REASONS.get(reason, reason),
                          tool_calls=message.get("tool_calls") or None)

    @staticmethod
    def _delta(choice: dict[str, Any], outputs: dict[int, list[str]],
               tool_calls: dict[int, dict[int, dict[str, Any]]]) -> StreamDelta | None:
        """One choice of one chunk as a StreamDelta; tool calls are held back for the final one."""
        index = choice.get("index", 0)
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        outputs[index].append(text)
        for part in delta.get("tool_calls") or []:
            _merge_tool_call(tool_calls[index], part)
        reason = choice.get("finish_reason")
        if reason:
            calls = [tool_calls[index][i] for i in sorted(tool_calls[index])] or None
            return StreamDelta(index, text, FINISH_REASONS.get(reason, reason), calls)
        return StreamDelta(index, text) if text else None
