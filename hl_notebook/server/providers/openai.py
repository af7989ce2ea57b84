"""Pass-through to the OpenAI Chat Completions API (spec §5 mapping, §8 errors).

Why: ``provider: "openai"`` calls go to a real (or OpenAI-compatible) endpoint and come back as the
provider contract of ``base.py``. The HTTP plumbing (``Upstream``) is ``upstream.py``'s.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator

from hl_notebook.server.providers.base import Generation, ProviderCall, ProviderResult, StreamDelta, StreamUsage
from hl_notebook.server.providers.upstream import (
    Upstream, count, estimate_tokens, extra_params, read_timeout, resolve_base, resolve_key,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call"}  # spec §6 spelling


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    keep = ("role", "content", "name", "tool_calls", "tool_call_id")
    return {k: message[k] for k in keep if message.get(k) is not None}


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
    ``provider_api_keys.openai``, else ``OPENAI_API_KEY``; it only ever travels in the header.
    Keys in ``other`` that are not ours are added to the body (they never replace our fields).
    """

    origin = "OpenAI"

    def complete(self, call: ProviderCall) -> ProviderResult:
        upstream, body = self._upstream(call), self._body(call)
        with upstream.post(body) as response:
            data = upstream.json(response)
        generations = [self._generation(choice) for choice in data.get("choices") or []]
        generations.sort(key=lambda g: g.index)
        usage = data.get("usage") or {}
        estimate = estimate_tokens(call.messages, (g.text for g in generations))
        return ProviderResult(
            generations=generations,
            prompt_tokens=count(usage, "prompt_tokens", estimate[0]),
            generation_tokens=count(usage, "completion_tokens", estimate[1]),
            provider_request=upstream.redact(body),
            provider_responses=[upstream.redact(data)],
        )

    def stream(self, call: ProviderCall) -> Iterator[StreamDelta | StreamUsage]:
        upstream = self._upstream(call)
        body = {**self._body(call), "stream": True, "stream_options": {"include_usage": True}}
        outputs: dict[int, list[str]] = defaultdict(list)
        tool_calls: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
        finished: set[int] = set()
        usage: dict[str, Any] | None = None
        with upstream.post(body, stream=True) as response:
            for event in upstream.events(response):
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    delta = self._delta(choice, outputs, tool_calls)
                    if delta is None:
                        continue
                    if delta.finish_reason:
                        finished.add(delta.index)
                    yield delta
        if not finished.issuperset(range(call.num_samples)):
            raise upstream.cut_off()
        texts = [t for parts in outputs.values() for t in parts]
        texts += [c["function"]["arguments"] for calls in tool_calls.values() for c in calls.values()]
        prompt, generated = estimate_tokens(call.messages, texts)
        usage = usage or {}
        yield StreamUsage(count(usage, "prompt_tokens", prompt), count(usage, "completion_tokens", generated),
                          upstream.redact(body))

    def _upstream(self, call: ProviderCall) -> Upstream:
        other = call.config.get("other") or {}
        key = resolve_key(call, "openai", "OPENAI_API_KEY", self.origin)
        base = resolve_base(other, "OPENAI_BASE_URL", DEFAULT_BASE_URL)
        return Upstream(f"{base}/chat/completions", {"Authorization": f"Bearer {key}"}, key, self.origin,
                        read_timeout(other))

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
