"""The in-process ``llamacpp`` provider with SmolLM2-135M: samples, streaming, stop, max_tokens, seeds,
exact usage, a lock for concurrent calls, and real answers from ``%%hlchat`` in the embedded default.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hl_notebook.server.providers.base import ProviderCall, ProviderError, StreamDelta, StreamUsage
from hl_notebook.server.providers.llamacpp import LlamaCppProvider
from hl_notebook.server.providers.upstream import Upstreams
from tests.realmodel.conftest import chat_body
from tests.server.helpers import parse_events, unique

QUESTION = [{"role": "user", "content": "Name three colours."}]


def call(num_samples: int = 1, messages: list[dict[str, Any]] | None = None, **config: Any) -> ProviderCall:
    full = {"model": "smollm2-135m", "provider": "llamacpp", "temperature": 0, "top_p": 1, "max_tokens": 24,
            "presence_penalty": 0, "frequency_penalty": 0, **config}
    return ProviderCall(full, messages or QUESTION, num_samples)


@pytest.fixture(scope="module")
def provider(gguf: Path) -> LlamaCppProvider:
    return LlamaCppProvider(Upstreams())


def streamed(provider: LlamaCppProvider, request: ProviderCall) -> tuple[dict[int, str], dict[int, str], StreamUsage]:
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    items = list(provider.stream(request))
    for item in items[:-1]:
        assert isinstance(item, StreamDelta)
        texts[item.index] = texts.get(item.index, "") + item.text
        if item.finish_reason:
            reasons[item.index] = item.finish_reason
    assert isinstance(items[-1], StreamUsage)
    return texts, reasons, items[-1]


def test_samples_stream_and_exact_usage_agree_with_the_plain_call(provider: LlamaCppProvider) -> None:
    result = provider.complete(call(num_samples=2, seed=3, temperature=0.7))
    assert [g.index for g in result.generations] == [0, 1] and all(g.text for g in result.generations)
    assert len(result.provider_responses) == 2 and result.provider_responses[0]["model"].endswith(".gguf")
    texts, reasons, usage = streamed(provider, call(num_samples=2, seed=3, temperature=0.7))
    assert texts == {g.index: g.text for g in result.generations}
    assert reasons == {g.index: g.finish_reason for g in result.generations}
    assert (usage.prompt_tokens, usage.generation_tokens) == (result.prompt_tokens, result.generation_tokens)
    assert usage.provider_responses[0]["model"] == result.provider_responses[0]["model"]


def test_temperature_0_first_answer_equals_its_repeats(provider: LlamaCppProvider) -> None:
    """Pitfall 21: without reset() the prompt cache made the first answer differ from the repeats."""
    question = [{"role": "user", "content": "Say something about the sea."}]
    provider.complete(call(messages=[{"role": "user", "content": "Something else first."}]))
    answers = [provider.complete(call(messages=question)).generations[0].text for _ in range(3)]
    answers += [g.text for g in provider.complete(call(num_samples=2, messages=question)).generations]
    assert answers[0] and len(set(answers)) == 1, answers


def test_seed_gives_the_same_samples_and_samples_differ(provider: LlamaCppProvider) -> None:
    first = [g.text for g in provider.complete(call(num_samples=3, seed=11, temperature=1.0)).generations]
    again = [g.text for g in provider.complete(call(num_samples=3, seed=11, temperature=1.0)).generations]
    assert first == again
    assert len(set(first)) > 1, first  # sample i uses seed + i


def test_stop_and_max_tokens(provider: LlamaCppProvider) -> None:
    text = provider.complete(call(max_tokens=32)).generations[0].text
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]
    cut = provider.complete(call(max_tokens=32, stop=[stop])).generations[0]
    assert (cut.text, cut.finish_reason) == (text[: text.index(stop)], "stop")
    short = provider.complete(call(max_tokens=4))
    assert (short.generations[0].finish_reason, short.generation_tokens) == ("length", 4)


def test_concurrent_calls_take_turns(provider: LlamaCppProvider) -> None:
    expected = provider.complete(call()).generations[0].text
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(provider.complete(call()).generations[0].text))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [expected] * 3


def test_bad_models_and_tools_are_422(provider: LlamaCppProvider, tmp_path: Path) -> None:
    for model, message in (("gpt-4", "neither smollm2-135m nor a path to a .gguf file"),
                           (str(tmp_path / "none.gguf"), "no GGUF file at")):
        with pytest.raises(ProviderError) as info:
            provider.complete(call(model=model))
        assert info.value.status == 422 and message in info.value.message
    with pytest.raises(ProviderError, match="does not support tools"):
        provider.complete(call(tools=[{"name": "f", "parameters": {"type": "object"}}]))


def test_cancel_ends_a_running_generation(gguf: Path) -> None:
    upstreams = Upstreams()
    provider = LlamaCppProvider(upstreams)
    stream = provider.stream(call(max_tokens=-1, temperature=1.0,
                                  messages=[{"role": "user", "content": "Write a very long story."}]))
    assert isinstance(next(stream), StreamDelta)
    upstreams.cancel()
    with pytest.raises(ProviderError) as info:
        list(stream)
    assert (info.value.status, info.value.type) == (502, "upstream_cancelled")


def test_server_process_answers_with_the_in_process_model(server: Any, gguf: Path) -> None:
    body = chat_body(None, "llamacpp", project=unique("llamacpp"), num_samples=2, model="smollm2-135m")
    response = server.post("/chat", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [d["index"] for d in answer["data"]] == [0, 1] and answer["data"][0]["output"]
    assert answer["usage"]["generation_tokens"] > 0
    events = [e for e in parse_events(server.post("/chat", {**body, "stream": True})) if e["data"][0]["finish_reason"]]
    assert [e["data"][0]["output_message"]["content"] for e in events] == [d["raw_output"] for d in answer["data"]]
    assert events[-1]["usage"] == answer["usage"]


def test_magic_gives_real_answers_in_the_embedded_default(ipython: Any, gguf: Path) -> None:
    """``%%hlchat --provider llamacpp --model smollm2-135m`` with no server configured."""
    frame = ipython.run_cell_magic("hlchat", "--provider llamacpp --model smollm2-135m --max-tokens 16 -n 2",
                                   "What is the capital of France?")
    assert frame["error"].isna().all() and frame["output"].str.len().gt(0).all()
    assert frame["upstream_model"].tolist() == ["SmolLM2-135M-Instruct.Q4_1.gguf"] * 2
    assert frame["call_generation_tokens"].iloc[0] > 0
