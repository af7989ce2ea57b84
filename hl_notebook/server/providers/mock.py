"""The ``mock`` provider: deterministic answers with no network and no key.

Why: tests, demos and benchmarks need a model whose output is reproducible and whose latency can
be dialled in, so sweeps behave like real ones offline.

Behaviour (the contract the tests rely on):

* The reply to a call is ``"<model>: <last user text>"`` where the last user text is the text of
  the last ``user`` message after rendering (``(no user message)`` when there is none).
* At ``temperature`` 0 every sample is that reply. Above 0 each sample appends
  ``" ~ "`` and 1 + round(4 * min(temperature, 2)) words drawn from a fixed vocabulary by a random
  generator seeded with (messages, model, temperature, top_p, seed, sample index): samples differ
  from each other, and the same request always gives the same samples.
* Tokens are whitespace-separated words. ``max_tokens`` > 0 keeps that many words and sets
  ``finish_reason`` to ``length``; a ``stop`` string cuts the reply before its first occurrence.
* Usage: ``prompt_tokens`` counts the words of all rendered messages, ``generation_tokens`` the
  words of all samples.
* Latency: ``other.mock_latency_ms`` (else the server's ``--mock-latency-ms``) is slept once per
  call before the first token; ``other.mock_token_delay_ms`` is slept between streamed words.
  Each is a number of milliseconds from 0 to ``MAX_MOCK_MS`` (60 000) or null (the default); any
  other value is a 422 at validation (and a 422 provider error from a config stored before this
  rule). The cap keeps one request from holding a chat worker thread for longer than a minute.
* Streaming sends the reply word by word (the first word, then ``" word"`` deltas), one sample
  after another.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from typing import Any, Iterator

from .base import Generation, ProviderCall, ProviderError, ProviderResult, StreamDelta, StreamUsage

MAX_MOCK_MS = 60_000.0


def mock_ms(value: Any) -> float | None:
    """A mock knob's milliseconds (None when unset).

    Raises:
        ValueError: not a number (booleans included) or outside 0..MAX_MOCK_MS.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_MOCK_MS:
        raise ValueError(f"must be a number of milliseconds from 0 to {MAX_MOCK_MS:.0f}")
    return float(value)


VOCABULARY = ("indeed", "perhaps", "certainly", "notably", "briefly", "overall", "likewise",
              "however", "moreover", "frankly", "honestly", "clearly", "roughly", "simply")


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def count_words(messages: list[dict[str, Any]]) -> int:
    return sum(len(_text(m).split()) for m in messages)


def _key_prefix(call: ProviderCall, temperature: float) -> str:
    """The seed text of a sample without its index: ``json.dumps([messages, model, temperature, top_p,
    seed, index], sort_keys=True, default=str)`` is this plus ``f"{index}]"`` (a list's items are
    joined by ``", "``), so a call's samples encode the messages once."""
    config = call.config
    whole = json.dumps([call.messages, config["model"], temperature, config.get("top_p"), config.get("seed")],
                       sort_keys=True, default=str)
    return whole[:-1] + ", "


def _words(rng: random.Random, count: int) -> list[str]:
    """``[rng.choice(VOCABULARY) for _ in range(count)]`` without its per-call layers: ``choice`` of 14
    items is ``getrandbits(4)`` drawn again while it is 14 or 15 (``Random._randbelow_with_getrandbits``),
    so the words are the same."""
    getrandbits, size, words = rng.getrandbits, len(VOCABULARY), []
    bits = size.bit_length()
    for _ in range(count):
        r = getrandbits(bits)
        while r >= size:
            r = getrandbits(bits)
        words.append(VOCABULARY[r])
    return words


class MockProvider:
    """See the module docstring for the exact, documented behaviour."""

    def __init__(self, default_latency_ms: float = 0.0) -> None:
        self.default_latency_ms = default_latency_ms

    @staticmethod
    def _knob(call: ProviderCall, name: str) -> float | None:
        try:
            return mock_ms((call.config.get("other") or {}).get(name))
        except ValueError as exc:
            raise ProviderError(f"other.{name} {exc}", status=422, type="unprocessable_entity_error") from None

    def latency_ms(self, call: ProviderCall) -> float:
        latency_ms = self._knob(call, "mock_latency_ms")
        return self.default_latency_ms if latency_ms is None else latency_ms

    def _latency(self, call: ProviderCall) -> None:
        latency_ms = self.latency_ms(call)
        if latency_ms:
            time.sleep(latency_ms / 1000)

    def _sample(self, call: ProviderCall, index: int, prefix: str | None = None) -> Generation:
        """Sample ``index``; ``prefix``: ``_key_prefix(call)`` when the caller made it already (one per call)."""
        config = call.config
        users = [m for m in call.messages if m.get("role") == "user"]
        text = f"{config['model']}: " + (_text(users[-1]).strip() if users else "(no user message)")
        temperature = float(config.get("temperature", 1))
        if temperature > 0:
            key = (prefix if prefix is not None else _key_prefix(call, temperature)) + f"{index}]"
            rng = random.Random(hashlib.sha256(key.encode()).digest())
            # capped: a wild temperature (1e16) must not keep a worker busy for ever
            text += " ~ " + " ".join(_words(rng, 1 + round(4 * min(temperature, 2.0))))
        finish_reason = "stop"
        stops = config.get("stop")
        for stop in [stops] if isinstance(stops, str) else stops or []:
            if stop and stop in text:
                text = text[: text.index(stop)]
        words = text.split()
        max_tokens = config.get("max_tokens", -1)
        if max_tokens is not None and max_tokens > 0 and len(words) > max_tokens:
            text, finish_reason = " ".join(words[:max_tokens]), "length"
        return Generation(index=index, text=text, finish_reason=finish_reason)

    def _request(self, call: ProviderCall) -> dict[str, Any]:
        return {"model": call.config["model"], "messages": call.messages, "n": call.num_samples,
                "temperature": call.config.get("temperature"), "max_tokens": call.config.get("max_tokens")}

    def complete(self, call: ProviderCall) -> ProviderResult:
        self._latency(call)
        return self._result(call)

    async def complete_async(self, call: ProviderCall) -> ProviderResult:
        """``complete`` for the server's event loop: the latency is awaited, so it holds no thread."""
        latency_ms = self.latency_ms(call)
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        return self._result(call)

    def _result(self, call: ProviderCall) -> ProviderResult:
        temperature = call.config.get("temperature", 1)
        several = call.num_samples > 1 and isinstance(temperature, (int, float)) and temperature > 0
        prefix = _key_prefix(call, float(temperature)) if several else None
        generations = [self._sample(call, i, prefix) for i in range(call.num_samples)]
        generation_tokens = sum(len(g.text.split()) for g in generations)
        response = {"object": "mock.completion", "model": call.config["model"],
                    "choices": [{"index": g.index, "text": g.text, "finish_reason": g.finish_reason}
                                for g in generations]}
        return ProviderResult(generations, count_words(call.messages), generation_tokens,
                              provider_request=self._request(call), provider_responses=[response])

    def stream(self, call: ProviderCall) -> Iterator[StreamDelta | StreamUsage]:
        delay_ms = self._knob(call, "mock_token_delay_ms") or 0.0
        self._latency(call)
        generation_tokens = 0
        for index in range(call.num_samples):
            sample = self._sample(call, index)
            words = sample.text.split(" ")
            generation_tokens += len(sample.text.split())
            for position, word in enumerate(words):
                if delay_ms and position:
                    time.sleep(delay_ms / 1000)
                last = position == len(words) - 1
                yield StreamDelta(index, word if position == 0 else " " + word,
                                  sample.finish_reason if last else None)
        yield StreamUsage(count_words(call.messages), generation_tokens, self._request(call))
