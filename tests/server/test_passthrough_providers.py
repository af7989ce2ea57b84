"""The OpenAI and Anthropic pass-through providers, called directly against fake servers over HTTP.

Why: request mapping, stream decoding, error mapping and key redaction are only believable when
real bytes cross a real socket (conventions §2.6); the fakes pick failures by model name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from hl_notebook.server.providers.anthropic import AnthropicProvider
from hl_notebook.server.providers.base import ProviderCall, ProviderError, StreamDelta, StreamUsage
from hl_notebook.server.providers.openai import OpenAIProvider
from support import closed_port_url
from tests.fakes import anthropic_server, openai_server, serve, serve_raw

CANARY = "sk-CANARY-7f3a9"
HELLO = [{"role": "user", "content": "hello world"}]
TOOLS = [{"name": "get_weather", "description": "Weather for a place",
          "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}]
ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")


@dataclass
class Fake:
    """One running fake provider and the provider class under test."""

    name: str
    provider: Any
    base_url: str
    app: Any

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.app.state.requests

    def call(self, model: str = "test-model", messages: list[dict[str, Any]] | None = None, *,
             key: str | None = CANARY, num_samples: int = 1, user: str | None = None,
             tool_choice: Any = None, other: dict[str, Any] | None = None, **config: Any) -> ProviderCall:
        """A call with spec §5 defaults applied, aimed at this fake."""
        full = {"model": model, "provider": self.name, "temperature": 1, "top_p": 1, "max_tokens": -1,
                "presence_penalty": 0, "frequency_penalty": 0,
                "other": {"base_url": self.base_url, **(other or {})}, **config}
        return ProviderCall(full, messages or HELLO, num_samples, {self.name: key} if key else {},
                            user=user, tool_choice=tool_choice)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Fake]]:
    openai_app, anthropic_app = openai_server.create_app(CANARY), anthropic_server.create_app(CANARY)
    with serve(openai_app) as openai_url, serve(anthropic_app) as anthropic_url:
        yield {"openai": Fake("openai", OpenAIProvider(), f"{openai_url}/v1", openai_app),
               "anthropic": Fake("anthropic", AnthropicProvider(), anthropic_url, anthropic_app)}


@pytest.fixture(params=["openai", "anthropic"])
def fake(request: pytest.FixtureRequest, fakes: dict[str, Fake]) -> Fake:
    return fakes[request.param]


@pytest.fixture
def openai(fakes: dict[str, Fake]) -> Fake:
    return fakes["openai"]


@pytest.fixture
def anthropic(fakes: dict[str, Fake]) -> Fake:
    return fakes["anthropic"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys or base URLs in the developer's environment must not change what the tests see."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def run_stream(provider: Any, call: ProviderCall) -> tuple[dict[int, str], dict[int, StreamDelta], StreamUsage]:
    """Drain a stream and check its contract: per-sample deltas ending in a finish, then one usage."""
    items = list(provider.stream(call))
    assert isinstance(items[-1], StreamUsage)
    assert not any(isinstance(item, StreamUsage) for item in items[:-1])
    texts: dict[int, str] = {}
    finals: dict[int, StreamDelta] = {}
    for delta in items[:-1]:
        assert delta.index not in finals, "delta after the sample's finish"
        texts[delta.index] = texts.get(delta.index, "") + delta.text
        if delta.finish_reason:
            finals[delta.index] = delta
    assert set(finals) == set(texts) == set(range(call.num_samples))
    return texts, finals, items[-1]


def stream_error(provider: Any, call: ProviderCall) -> tuple[str, ProviderError]:
    """The text streamed before the ProviderError, and the error."""
    received = ""
    with pytest.raises(ProviderError) as info:
        for item in provider.stream(call):
            received += item.text if isinstance(item, StreamDelta) else ""
    return received, info.value


# --- text, samples, parameters -------------------------------------------------------------------

def test_complete_returns_text_usage_and_raw_payloads(fake: Fake) -> None:
    result = fake.provider.complete(fake.call())
    assert [(g.index, g.text, g.finish_reason, g.tool_calls) for g in result.generations] == [
        (0, "echo: hello world", "stop", None)]
    assert (result.prompt_tokens, result.generation_tokens) == (2, 3)
    assert result.provider_request == fake.requests[-1]
    assert len(result.provider_responses) == 1
    assert result.provider_responses[0]["model"] == "test-model"


def test_stream_yields_deltas_then_finish_then_usage(fake: Fake) -> None:
    texts, finals, usage = run_stream(fake.provider, fake.call())
    assert texts == {0: "echo: hello world"}
    assert finals[0].finish_reason == "stop" and finals[0].tool_calls is None
    assert (usage.prompt_tokens, usage.generation_tokens) == (2, 3)
    assert usage.provider_request == fake.requests[-1]
    assert usage.provider_request["stream"] is True


def test_openai_stream_asks_for_usage_and_reads_crlf(openai: Fake) -> None:
    texts, _, usage = run_stream(openai.provider, openai.call("crlf"))
    assert texts == {0: "echo: hello world"}
    assert openai.requests[-1]["stream_options"] == {"include_usage": True}
    assert (usage.prompt_tokens, usage.generation_tokens) == (2, 3)


def test_openai_stream_without_usage_estimates_from_words(openai: Fake) -> None:
    _, _, usage = run_stream(openai.provider, openai.call("no-usage", num_samples=2))
    assert (usage.prompt_tokens, usage.generation_tokens) == (2, 6)


def test_openai_num_samples_is_one_call_with_n(openai: Fake) -> None:
    before = len(openai.requests)
    result = openai.provider.complete(openai.call(num_samples=3))
    assert [g.index for g in result.generations] == [0, 1, 2]
    assert {g.text for g in result.generations} == {"echo: hello world"}
    assert len(openai.requests) == before + 1 and openai.requests[-1]["n"] == 3
    assert len(result.provider_responses) == 1
    texts, _, _ = run_stream(openai.provider, openai.call(num_samples=2))
    assert texts == {0: "echo: hello world", 1: "echo: hello world"}


def test_anthropic_num_samples_is_n_calls_with_usage_summed(anthropic: Fake) -> None:
    before = len(anthropic.requests)
    result = anthropic.provider.complete(anthropic.call(num_samples=2))
    assert [(g.index, g.text) for g in result.generations] == [(0, "echo: hello world"), (1, "echo: hello world")]
    assert len(anthropic.requests) == before + 2 and "n" not in anthropic.requests[-1]
    assert len(result.provider_responses) == 2
    assert (result.prompt_tokens, result.generation_tokens) == (4, 6)
    texts, _, usage = run_stream(anthropic.provider, anthropic.call(num_samples=2))
    assert texts == {0: "echo: hello world", 1: "echo: hello world"}
    assert (usage.prompt_tokens, usage.generation_tokens) == (4, 6)


def test_max_tokens_minus_one_means_no_limit(openai: Fake, anthropic: Fake) -> None:
    openai.provider.complete(openai.call(max_tokens=-1))
    assert "max_tokens" not in openai.requests[-1]
    anthropic.provider.complete(anthropic.call(max_tokens=-1))
    assert anthropic.requests[-1]["max_tokens"] == 1024  # required by Anthropic


def test_max_tokens_is_sent_and_length_is_reported(fake: Fake) -> None:
    result = fake.provider.complete(fake.call(max_tokens=2))
    assert fake.requests[-1]["max_tokens"] == 2
    assert (result.generations[0].text, result.generations[0].finish_reason) == ("echo: hello", "length")
    _, finals, _ = run_stream(fake.provider, fake.call(max_tokens=2))
    assert finals[0].finish_reason == "length"


def test_stop_sequences_are_sent(openai: Fake, anthropic: Fake) -> None:
    result = openai.provider.complete(openai.call(stop=" world"))
    assert openai.requests[-1]["stop"] == " world"
    assert (result.generations[0].text, result.generations[0].finish_reason) == ("echo: hello", "stop")
    result = anthropic.provider.complete(anthropic.call(stop=" world"))
    assert anthropic.requests[-1]["stop_sequences"] == [" world"]
    assert (result.generations[0].text, result.generations[0].finish_reason) == ("echo: hello", "stop")


def test_openai_body_carries_parameters_and_clean_messages(openai: Fake) -> None:
    messages = [{"role": "system", "content": "be brief", "name": None, "tool_calls": None},
                {"role": "user", "content": "hello world", "name": "ada"}]
    openai.provider.complete(openai.call(
        messages=messages, temperature=0.2, top_p=0.9, presence_penalty=0.5, frequency_penalty=0.1,
        seed=7, user="u-1", response_format={"type": "json_object"},
        other={"logit_bias": {"50256": -100}, "mock_delay": 1, "timeout": 30}))
    sent = openai.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hello world", "name": "ada"}]
    assert {k: sent[k] for k in ("model", "n", "temperature", "top_p", "presence_penalty", "frequency_penalty",
                                 "seed", "user", "response_format", "logit_bias")} == {
        "model": "test-model", "n": 1, "temperature": 0.2, "top_p": 0.9, "presence_penalty": 0.5,
        "frequency_penalty": 0.1, "seed": 7, "user": "u-1", "response_format": {"type": "json_object"},
        "logit_bias": {"50256": -100}}
    assert not {"base_url", "mock_delay", "timeout", "tools", "tool_choice", "stop"} & set(sent)


def test_anthropic_body_joins_system_and_translates_tool_turns(anthropic: Fake) -> None:
    call = {"id": "toolu_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"text": "x"}'}}
    messages = [{"role": "system", "content": "be brief"}, {"role": "system", "content": "be kind"},
                {"role": "user", "content": "weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": "sunny", "tool_call_id": "toolu_9"},
                {"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    result = anthropic.provider.complete(anthropic.call(
        messages=messages, temperature=0.5, user="u-1", other={"top_k": 5, "mock_delay": 1}))
    assert result.generations[0].text == "echo: hello world"
    sent = anthropic.requests[-1]
    assert sent["system"] == "be brief\n\nbe kind"
    assert sent["messages"][1:3] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                           "input": {"text": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}]}]
    assert (sent["temperature"], sent["top_k"], sent["metadata"]) == (0.5, 5, {"user_id": "u-1"})
    assert "top_p" not in sent  # left at Anthropic's default, which recent models need


def test_key_and_base_url_fall_back_to_environment(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = fake.name.upper()
    monkeypatch.setenv(f"{prefix}_API_KEY", CANARY)
    monkeypatch.setenv(f"{prefix}_BASE_URL", fake.base_url)
    call = fake.call(key=None)
    call.config["other"].pop("base_url")
    assert fake.provider.complete(call).generations[0].text == "echo: hello world"


# --- tool calls ----------------------------------------------------------------------------------

TOOL_IDS = {"openai": ("call_0", ""), "anthropic": ("toolu_0", "calling get_weather")}


def test_tool_call_complete_and_stream(fake: Fake) -> None:
    tool_id, text = TOOL_IDS[fake.name]
    expected = [{"id": tool_id, "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"text": "hello world"})}}]
    generation = fake.provider.complete(fake.call("tool", tools=TOOLS)).generations[0]
    assert (generation.text, generation.finish_reason, generation.tool_calls) == (text, "tool_call", expected)
    texts, finals, _ = run_stream(fake.provider, fake.call("tool", tools=TOOLS))
    assert texts == {0: text}
    assert (finals[0].finish_reason, finals[0].tool_calls) == ("tool_call", expected)


def test_tools_are_sent_in_each_providers_shape(openai: Fake, anthropic: Fake) -> None:
    openai.provider.complete(openai.call("tool", tools=TOOLS))
    assert openai.requests[-1]["tools"] == [{"type": "function", "function": TOOLS[0]}]
    assert openai.requests[-1]["tool_choice"] == "auto"
    choice = {"type": "function", "function": {"name": "get_weather"}}
    anthropic.provider.complete(anthropic.call("tool", tools=TOOLS, tool_choice=choice))
    assert anthropic.requests[-1]["tools"] == [{"name": "get_weather", "description": "Weather for a place",
                                                "input_schema": TOOLS[0]["parameters"]}]
    assert anthropic.requests[-1]["tool_choice"] == {"type": "tool", "name": "get_weather"}


# --- errors --------------------------------------------------------------------------------------

HTTP_ERRORS = [
    ("openai", "fail-429", 429, "rate_limit_error", 2.0, "Rate limit reached for requests"),
    ("openai", "fail-500", 502, "bad_gateway", None, "The server had an error while processing your request."),
    ("openai", "fail-404", 422, "unprocessable_entity_error", None, "The model `fail-404` does not exist"),
    ("anthropic", "fail-429", 429, "rate_limit_error", 2.0, "Number of request tokens has exceeded your rate limit"),
    ("anthropic", "fail-500", 502, "bad_gateway", None, "Internal server error"),
    ("anthropic", "fail-529", 503, "service_unavailable", 2.0, "Overloaded"),
    ("anthropic", "fail-404", 422, "unprocessable_entity_error", None, "model: fail-404"),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("name, model, status, type, retry_after, message", HTTP_ERRORS)
def test_http_errors_are_mapped(fakes: dict[str, Fake], streaming: bool, name: str, model: str, status: int,
                                type: str, retry_after: float | None, message: str) -> None:
    fake = fakes[name]
    with pytest.raises(ProviderError) as info:
        if streaming:
            list(fake.provider.stream(fake.call(model)))
        else:
            fake.provider.complete(fake.call(model))
    error = info.value
    assert (error.status, error.type, error.retry_after, error.message) == (status, type, retry_after, message)
    assert error.detail() == {"type": type, "message": message, "code": status,
                              "origin": {"openai": "OpenAI", "anthropic": "Anthropic"}[name]}


def test_wrong_key_is_401_and_redacted(openai: Fake, anthropic: Fake) -> None:
    with pytest.raises(ProviderError) as info:
        openai.provider.complete(openai.call(key="sk-wrong-1234"))
    assert (info.value.status, info.value.type) == (401, "authentication_error")
    assert info.value.message == "Incorrect API key provided: ***."  # the fake echoes the key it got
    with pytest.raises(ProviderError) as info:
        anthropic.provider.complete(anthropic.call(key="sk-wrong-1234"))
    assert (info.value.status, info.value.type, info.value.message) == (401, "authentication_error",
                                                                        "invalid x-api-key")


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_missing_key_is_401_before_any_request(fake: Fake, streaming: bool) -> None:
    before = len(fake.requests)
    with pytest.raises(ProviderError) as info:
        list(fake.provider.stream(fake.call(key=None))) if streaming else fake.provider.complete(fake.call(key=None))
    origin = {"openai": "OpenAI", "anthropic": "Anthropic"}[fake.name]
    assert (info.value.status, info.value.type, info.value.origin) == (401, "authentication_error", origin)
    assert info.value.message == (f"no {origin} API key: pass provider_api_keys.{fake.name} "
                                  f"or set {fake.name.upper()}_API_KEY on the server")
    assert len(fake.requests) == before


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_unreachable_base_url_is_503(fake: Fake, streaming: bool) -> None:
    url = closed_port_url()
    call = fake.call(other={"base_url": url})
    with pytest.raises(ProviderError) as info:
        list(fake.provider.stream(call)) if streaming else fake.provider.complete(call)
    origin = {"openai": "OpenAI", "anthropic": "Anthropic"}[fake.name]
    assert (info.value.status, info.value.type) == (503, "service_unavailable")
    assert info.value.message == f"{origin} is unreachable at {url.removeprefix('http://')}"


def test_stream_cut_mid_way_raises_after_partial_text(fake: Fake) -> None:
    received, error = stream_error(fake.provider, fake.call("cut-stream"))
    assert received == "echo: hello "
    assert (error.status, error.type) == (502, "bad_gateway")
    assert "stream ended before every sample finished" in error.message


def test_connection_dropped_mid_stream_raises(fake: Fake) -> None:
    event = {"openai": {"choices": [{"index": 0, "delta": {"content": "echo: "}, "finish_reason": None}]},
             "anthropic": {"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": "echo: "}}}[fake.name]
    chunk = f"data: {json.dumps(event)}\n\n".encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    # one chunk, then the connection closes without the terminating zero-length chunk
    with serve_raw(head + b"%x\r\n%s\r\n" % (len(chunk), chunk)) as url:
        base = f"{url}/v1" if fake.name == "openai" else url
        received, error = stream_error(fake.provider, fake.call(other={"base_url": base}))
    assert received == "echo: "
    assert (error.status, error.type) == (502, "bad_gateway")
    assert "stream broke off" in error.message


def test_error_event_mid_stream_raises(openai: Fake, anthropic: Fake) -> None:
    received, error = stream_error(openai.provider, openai.call("error-stream"))
    assert (received, error.status, error.message) == ("echo: ", 502, "upstream fell over")
    received, error = stream_error(anthropic.provider, anthropic.call("error-stream"))
    assert (received, error.status, error.type, error.message) == ("echo: ", 503, "service_unavailable", "Overloaded")


# --- secrets -------------------------------------------------------------------------------------

def test_canary_key_appears_in_no_payload_or_error(fake: Fake) -> None:
    """The key is sent (the fake accepts it) yet is absent from everything handed back."""
    seen: list[str] = []
    for call in (fake.call(), fake.call("tool", tools=TOOLS), fake.call(num_samples=2)):
        result = fake.provider.complete(call)
        seen += [json.dumps(result.provider_request), json.dumps(result.provider_responses), repr(result)]
        seen += [repr(item) for item in fake.provider.stream(call)]
    failing = [fake.call(model) for model in ("fail-429", "fail-500", "fail-404", "cut-stream", "error-stream")]
    failing += [fake.call(key=CANARY + "-wrong"), fake.call(other={"base_url": closed_port_url()})]
    for call in failing:
        for run in (fake.provider.complete, lambda c: list(fake.provider.stream(c))):
            try:
                run(call)
            except ProviderError as error:
                seen += [str(error), repr(error), error.message, json.dumps(error.detail())]
    assert fake.requests[-1]  # the fake did receive requests made with the canary
    assert not [text for text in seen if CANARY in text]
