"""Pass-through to the Anthropic Messages API, translated from and to the v4 chat shapes.

Why: ``provider: "anthropic"`` calls must reach Anthropic, whose wire format differs from OpenAI's
(top-level ``system``, required ``max_tokens``, no ``n``, content blocks); this module translates.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from hl_notebook.server.providers.base import (
    Generation, ProviderCall, ProviderError, ProviderResult, StreamDelta, StreamUsage,
)
from hl_notebook.server.providers.upstream import (
    DEFAULT_UPSTREAMS, Upstream, Upstreams, count, extra_params, gather, public_url, read_timeout, resolve_base,
    resolve_key, total,
)
from hl_notebook.template import text_parts

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # Anthropic requires max_tokens; v4's -1 ("no limit") has no equivalent
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_call"}
TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def _prompt_tokens(usage: dict[str, Any]) -> int | None:
    """Input tokens including prompt-cache reads and writes, which Anthropic reports apart; None
    when no input count was reported."""
    if count(usage, "input_tokens") is None:
        return None
    names = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(count(usage, name) or 0 for name in names)


def _route_hint(base: str) -> str:
    """What to say when ``{base}/v1/messages`` is no endpoint."""
    rule = "Anthropic base URLs do not end in /v1 (/v1/messages is added)"
    if base.endswith("/v1"):
        return f"{rule}: try other.base_url={public_url(base[:-3])}"
    return f"{rule}; is other.base_url the server's root?"


def _tool_call(block_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _content(content: Any) -> str | list[dict[str, Any]]:
    """v4 content (string or text/image_url parts) as Anthropic content."""
    if not isinstance(content, list):
        return content or ""
    blocks = []
    for part in content:
        if part.get("type") != "image_url":
            blocks.append({"type": "text", "text": part.get("text") or ""})
            continue
        url = (part.get("image_url") or {}).get("url", "")
        media_type, base64, data = url.removeprefix("data:").partition(";base64,")
        source = ({"type": "base64", "media_type": media_type, "data": data}
                  if url.startswith("data:") and base64 else {"type": "url", "url": url})
        blocks.append({"type": "image", "source": source})
    return blocks


def _arguments(text: str | None) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        raise ProviderError("tool_calls[].function.arguments must be a JSON string", status=422,
                            type="unprocessable_entity_error", origin="Humanloop") from None


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """One non-system v4 message as an Anthropic message (tool results travel as user blocks)."""
    content = _content(message.get("content"))
    if message["role"] == "tool":
        return {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": content}]}
    if not message.get("tool_calls"):
        return {"role": message["role"], "content": content}
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) and content else list(content)
    blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                "input": _arguments(c["function"].get("arguments"))} for c in message["tool_calls"]]
    return {"role": message["role"], "content": blocks}


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    return TOOL_CHOICES.get(choice)


class AnthropicProvider:
    """``provider: "anthropic"``: the rendered call sent to ``{base}/v1/messages``.

    Base URL: ``other.base_url``, else ``ANTHROPIC_BASE_URL``, else api.anthropic.com. Key: the body's
    ``provider_api_keys.anthropic``, else ``ANTHROPIC_API_KEY`` (header only; at another base URL,
    such as a local llama-server, none is needed and then none is sent). Anthropic has no ``n``, so
    ``num_samples`` are ``num_samples`` requests: at once when not streaming, one after another when
    streaming; one provider response per request, usage summed (None if any request reported none).
    """

    origin = "Anthropic"

    def __init__(self, upstreams: Upstreams = DEFAULT_UPSTREAMS) -> None:
        self.upstreams = upstreams

    def complete(self, call: ProviderCall) -> ProviderResult:
        upstream, body = self._upstream(call), self._body(call)

        answers = gather([lambda: upstream.fetch(body)] * call.num_samples)
        generations = [self._generation(index, data) for index, data in enumerate(answers)]
        usages = [data.get("usage") or {} for data in answers]
        return ProviderResult(generations, total([_prompt_tokens(u) for u in usages]),
                              total([count(u, "output_tokens") for u in usages]), upstream.redact(body),
                              [upstream.redact(data) for data in answers])

    def stream(self, call: ProviderCall) -> Iterator[StreamDelta | StreamUsage]:
        """Samples are streamed one after another (index 0..n-1), then one summed StreamUsage."""
        upstream, body = self._upstream(call), {**self._body(call), "stream": True}
        prompt: list[int | None] = []
        generated: list[int | None] = []
        responses: list[dict[str, Any]] = []
        for index in range(call.num_samples):
            usage: dict[str, int | None] = {"prompt": None, "generated": None}
            message: dict[str, Any] = {}
            yield from self._stream_sample(upstream, body, index, usage, message)
            prompt.append(usage["prompt"])
            generated.append(usage["generated"])
            responses.append(upstream.redact(message))
        yield StreamUsage(total(prompt), total(generated), upstream.redact(body), responses)

    def _stream_sample(self, upstream: Upstream, body: dict[str, Any], index: int,
                       usage: dict[str, int | None], message: dict[str, Any]) -> Iterator[StreamDelta]:
        """One streamed call: text deltas, then a final delta with finish_reason and tool calls.

        Fills ``usage`` (prompt, generated: as reported, else left None) and ``message`` (the
        ``message_start`` message, with the final stop reason and usage) for the caller; raises if
        the stream ends before ``message_stop``.
        """
        blocks: dict[int, dict[str, Any]] = {}
        reason = None
        with upstream.post(body, stream=True) as response:
            for event in upstream.events(response):
                kind = event.get("type")
                if kind == "message_start":
                    message.update(event.get("message") or {})
                    usage["prompt"] = _prompt_tokens(message.get("usage") or {})
                elif kind == "content_block_start":
                    blocks[event.get("index", len(blocks))] = {**event.get("content_block", {}), "json": ""}
                elif kind == "content_block_delta":
                    delta = event.get("delta") or {}
                    if delta.get("type") == "text_delta":
                        yield StreamDelta(index, delta.get("text", ""))
                    elif delta.get("type") == "input_json_delta":
                        blocks[event.get("index", 0)]["json"] += delta.get("partial_json", "")
                elif kind == "message_delta":
                    reason = (event.get("delta") or {}).get("stop_reason") or reason
                    reported = event.get("usage") or {}
                    if count(reported, "output_tokens") is not None:
                        usage["generated"] = count(reported, "output_tokens")
                        message["usage"] = {**(message.get("usage") or {}), **reported}
                elif kind == "message_stop":
                    calls = [_tool_call(b.get("id"), b.get("name"), b["json"] or json.dumps(b.get("input") or {}))
                             for _, b in sorted(blocks.items()) if b.get("type") == "tool_use"]
                    message["stop_reason"] = reason
                    upstream.settle(body, message.get("usage"))
                    yield StreamDelta(index, "", STOP_REASONS.get(reason, reason), calls or None)
                    return
        raise upstream.cut_off()

    def _upstream(self, call: ProviderCall) -> Upstream:
        other = call.config.get("other") or {}
        base = resolve_base(other, "ANTHROPIC_BASE_URL", DEFAULT_BASE_URL)
        key = resolve_key(call, "anthropic", "ANTHROPIC_API_KEY", self.origin, required=base == DEFAULT_BASE_URL)
        headers = {"anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})}
        return Upstream(f"{base}/v1/messages", headers, key, self.origin, read_timeout(other, self.upstreams.timeout),
                        overloaded=frozenset({503, 529}), route_hint=_route_hint(base), upstreams=self.upstreams,
                        limit=self.upstreams.limit_for("anthropic", key))

    @staticmethod
    def _body(call: ProviderCall) -> dict[str, Any]:
        """The Messages body. temperature and top_p go only when they differ from 1 (both
        Anthropic's defaults), because recent models refuse requests that set both."""
        config = call.config
        max_tokens = config.get("max_tokens", -1)
        body: dict[str, Any] = {
            "model": config["model"],
            "max_tokens": DEFAULT_MAX_TOKENS if max_tokens == -1 else max_tokens,
            "messages": [_wire_message(m) for m in call.messages if m["role"] != "system"],
        }
        system = "\n\n".join(t for m in call.messages if m["role"] == "system" for t in text_parts(m))
        if system:
            body["system"] = system
        for name in ("temperature", "top_p"):
            if config.get(name) not in (None, 1):
                body[name] = config[name]
        if config.get("stop"):
            stop = config["stop"]
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if call.user:
            body["metadata"] = {"user_id": call.user}
        tools = [{"name": t["name"], "description": t.get("description") or "",
                  "input_schema": t.get("parameters") or {"type": "object", "properties": {}}}
                 for t in config.get("tools") or []]
        if tools:
            body["tools"] = tools
            if _tool_choice(call.tool_choice):
                body["tool_choice"] = _tool_choice(call.tool_choice)
        for name, value in extra_params(config.get("other") or {}).items():
            body.setdefault(name, value)
        return body

    @staticmethod
    def _generation(index: int, data: dict[str, Any]) -> Generation:
        content = data.get("content") or []
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        calls = [_tool_call(b.get("id"), b.get("name"), json.dumps(b.get("input") or {}))
                 for b in content if b.get("type") == "tool_use"]
        reason = data.get("stop_reason")
        return Generation(index, text, STOP_REASONS.get(reason, reason), calls or None)
