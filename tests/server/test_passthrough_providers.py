"""The OpenAI and Anthropic pass-through providers, called directly against fake servers over HTTP.

Why: request mapping, stream decoding, error mapping and key redaction are only believable when
real bytes cross a real socket (conventions §2.6); the fakes pick failures by model name.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from hl_notebook.server.providers.anthropic import AnthropicProvider
from hl_notebook.server.providers.base import ProviderCall, ProviderError, StreamDelta, StreamUsage
from hl_notebook.server.providers.openai import OpenAIProvider
from hl_notebook.server.providers.upstream import Upstreams
from support import ServerProcess, closed_port_url
from tests.fakes import anthropic_server, openai_server, serve, serve_raw
from tests.server.helpers import parse_events, sigterm_cancels_the_waiting_call, unique

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


@pytest.fixture(scope="module")
def keyless() -> Iterator[dict[str, Fake]]:
    """Fakes that take any request, as local model servers do; each with its own Upstreams."""
    openai_app, anthropic_app = openai_server.create_app(None), anthropic_server.create_app(None)
    with serve(openai_app) as openai_url, serve(anthropic_app) as anthropic_url:
        yield {"openai": Fake("openai", OpenAIProvider(Upstreams()), f"{openai_url}/v1", openai_app),
               "anthropic": Fake("anthropic", AnthropicProvider(Upstreams()), anthropic_url, anthropic_app)}


@pytest.fixture(params=["openai", "anthropic"])
def fake(request: pytest.FixtureRequest, fakes: dict[str, Fake]) -> Fake:
    return fakes[request.param]


@pytest.fixture(params=["openai", "anthropic"])
def name(request: pytest.FixtureRequest) -> str:
    return request.param


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
    assert result.provider_responses[0]["model"] == "served-test-model"  # what served it, not what was asked


def test_stream_yields_deltas_then_finish_then_usage(fake: Fake) -> None:
    texts, finals, usage = run_stream(fake.provider, fake.call())
    assert texts == {0: "echo: hello world"}
    assert finals[0].finish_reason == "stop" and finals[0].tool_calls is None
    assert (usage.prompt_tokens, usage.generation_tokens) == (2, 3)
    assert usage.provider_request == fake.requests[-1]
    assert usage.provider_request["stream"] is True


def test_stream_reports_the_served_model_as_a_provider_response(fake: Fake) -> None:
    """Issue 16.8: a stream has provider responses too (one per request), so the served model is known."""
    _, _, usage = run_stream(fake.provider, fake.call(num_samples=2))
    assert [r["model"] for r in usage.provider_responses] == {"openai": ["served-test-model"],
                                                              "anthropic": ["served-test-model"] * 2}[fake.name]
    assert all("choices" not in r and "content" not in r or r["content"] == [] for r in usage.provider_responses)


def test_openai_stream_asks_for_usage_and_reads_crlf(openai: Fake) -> None:
    texts, _, usage = run_stream(openai.provider, openai.call("crlf"))
    assert texts == {0: "echo: hello world"}
    assert openai.requests[-1]["stream_options"] == {"include_usage": True}
    assert (usage.prompt_tokens, usage.generation_tokens) == (2, 3)


def test_no_usage_reported_leaves_the_counts_unknown(fake: Fake) -> None:
    """Issue 16.3: word counts used to stand in for tokens; an unreported count is None, never a guess."""
    _, _, usage = run_stream(fake.provider, fake.call("no-usage", num_samples=2))
    assert (usage.prompt_tokens, usage.generation_tokens) == (None, None)
    result = fake.provider.complete(fake.call("no-usage", num_samples=2))
    assert (result.prompt_tokens, result.generation_tokens) == (None, None)


def test_openai_upstream_ignoring_n_is_asked_for_each_missing_sample(openai: Fake) -> None:
    """Issue 16.1: llama-cpp-python's server answers one choice whatever n is; every sample must come back."""
    before = len(openai.requests)
    result = openai.provider.complete(openai.call("ignore-n", num_samples=3))
    assert [(g.index, g.text) for g in result.generations] == [(i, "echo: hello world") for i in range(3)]
    assert [r["n"] for r in openai.requests[before:]] == [3, 1, 1]
    assert len(result.provider_responses) == 3
    assert (result.prompt_tokens, result.generation_tokens) == (6, 9)  # summed over the three requests


def test_openai_stream_ignoring_n_streams_the_missing_samples_one_after_another(openai: Fake) -> None:
    before = len(openai.requests)
    items = list(openai.provider.stream(openai.call("ignore-n", num_samples=3)))
    order = [item.index for item in items if isinstance(item, StreamDelta)]
    assert order == sorted(order)  # one request at a time: a new request cuts llama-cpp-python's stream
    texts, _, usage = run_stream(openai.provider, openai.call("ignore-n", num_samples=3))
    assert texts == {i: "echo: hello world" for i in range(3)}
    assert [r["n"] for r in openai.requests[before:]] == [3, 1, 1] * 2
    assert (usage.prompt_tokens, usage.generation_tokens) == (6, 9)
    assert len(usage.provider_responses) == 3


def test_counts_of_calls_where_one_request_reported_none_are_unknown(openai: Fake) -> None:
    _, _, usage = run_stream(openai.provider, openai.call("ignore-n-no-usage", num_samples=2))
    assert (usage.prompt_tokens, usage.generation_tokens) == (None, None)
    result = openai.provider.complete(openai.call("ignore-n-no-usage", num_samples=2))
    assert len(result.generations) == 2 and (result.prompt_tokens, result.generation_tokens) == (None, None)


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
def test_missing_key_for_the_public_api_is_401_before_any_request(fake: Fake, streaming: bool) -> None:
    call = fake.call(key=None)
    del call.config["other"]["base_url"]  # the provider's own URL: nothing is sent there without a key
    with pytest.raises(ProviderError) as info:
        list(fake.provider.stream(call)) if streaming else fake.provider.complete(call)
    origin = {"openai": "OpenAI", "anthropic": "Anthropic"}[fake.name]
    assert (info.value.status, info.value.type, info.value.origin) == (401, "authentication_error", origin)
    # the client rewrites messages starting "no <Origin> API key" into the notebook's terms (errors.py)
    assert info.value.message == (f"no {origin} API key: pass provider_api_keys.{fake.name}, or set "
                                  f"{fake.name.upper()}_API_KEY where the server runs (a server at another "
                                  "other.base_url may need none)")


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_keyless_server_at_another_base_url_needs_no_key(keyless: dict[str, Fake], name: str, streaming: bool) -> None:
    """Issue 16.2: a local server needs no key; none is invented and no key header is sent."""
    fake = keyless[name]
    call = fake.call(key=None)
    if streaming:
        texts, _, _ = run_stream(fake.provider, call)
        assert texts == {0: "echo: hello world"}
    else:
        assert fake.provider.complete(call).generations[0].text == "echo: hello world"
    headers = fake.app.state.headers[-1]
    assert "authorization" not in headers and "x-api-key" not in headers


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_unreachable_base_url_is_a_502_the_client_does_not_retry(fake: Fake, streaming: bool) -> None:
    """Issue 16.4: a 503 was retried three times by the client; a server that is down stays down."""
    url = closed_port_url()
    call = fake.call(other={"base_url": url})
    with pytest.raises(ProviderError) as info:
        list(fake.provider.stream(call)) if streaming else fake.provider.complete(call)
    origin = {"openai": "OpenAI", "anthropic": "Anthropic"}[fake.name]
    assert (info.value.status, info.value.type, info.value.retry_after) == (502, "upstream_unreachable", None)
    assert info.value.message == f"{origin} is unreachable at {url.removeprefix('http://')} (connection refused)"


def test_wrong_base_url_names_the_url_and_the_fix(openai: Fake, anthropic: Fake) -> None:
    """Issue 16.6: "OpenAI answered HTTP 404" said nothing of the URL tried or of the /v1 rule."""
    root = openai.base_url.removesuffix("/v1")
    cases = [(openai, root, f"OpenAI answered HTTP 404 for POST {root}/chat/completions: OpenAI-compatible "
                            f"base URLs end in /v1: try other.base_url={root}/v1"),
             (openai, f"{root}/v1/v1", f"OpenAI answered HTTP 404 for POST {root}/v1/v1/chat/completions: "
                                       f"OpenAI-compatible base URLs end in /v1 (once): try other.base_url={root}/v1"),
             (anthropic, f"{anthropic.base_url}/v1", f"Anthropic answered HTTP 404 for POST {anthropic.base_url}"
                                                     "/v1/v1/messages: Anthropic base URLs do not end in /v1 "
                                                     f"(/v1/messages is added): try other.base_url={anthropic.base_url}")]
    for fake, base, message in cases:
        for run in (fake.provider.complete, lambda c: list(fake.provider.stream(c))):
            with pytest.raises(ProviderError) as info:
                run(fake.call(other={"base_url": base}))
            assert (info.value.status, info.value.type, info.value.message) == (
                422, "unprocessable_entity_error", message)


def test_a_base_url_with_credentials_is_shown_without_them(openai: Fake) -> None:
    root = openai.base_url.removesuffix("/v1")
    with pytest.raises(ProviderError) as info:
        openai.provider.complete(openai.call(other={"base_url": root.replace("http://", "http://ada:pw@")}))
    assert "ada" not in info.value.message and "pw@" not in info.value.message
    assert f"POST {root}/chat/completions" in info.value.message


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


# --- timeouts and shutdown (issue 16.7) ----------------------------------------------------------

def started(fake: Fake, count: int) -> None:
    """Wait (bounded) until the fake has received ``count`` requests."""
    for _ in range(200):
        if len(fake.requests) >= count:
            return
        time.sleep(0.025)
    raise AssertionError("the fake received no request")


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_hung_upstream_fails_after_other_timeout_with_partial_text(keyless: dict[str, Fake], name: str,
                                                                   streaming: bool) -> None:
    fake = keyless[name]
    call = fake.call("hang-stream" if streaming else "hang", key=None, other={"timeout": 0.5})
    origin = {"openai": "OpenAI", "anthropic": "Anthropic"}[name]
    if streaming:
        received, error = stream_error(fake.provider, call)
        assert received == "echo: "
    else:
        with pytest.raises(ProviderError) as info:
            fake.provider.complete(call)
        error = info.value
    host = fake.base_url.removeprefix("http://").removesuffix("/v1")
    assert (error.status, error.type) == (504, "upstream_timeout")
    assert error.message == (f"{origin} at {host} sent nothing for 0.5 s; raise other.timeout or the server's "
                             "--upstream-timeout")


def test_upstreams_timeout_is_the_default_other_timeout_wins(keyless: dict[str, Fake]) -> None:
    fake = keyless["openai"]
    provider = OpenAIProvider(Upstreams(timeout=0.3))
    with pytest.raises(ProviderError) as info:
        provider.complete(fake.call("hang", key=None))
    assert (info.value.type, "0.3 s" in info.value.message) == ("upstream_timeout", True)
    with pytest.raises(ProviderError) as info:
        provider.complete(fake.call("hang", key=None, other={"timeout": 0.6}))
    assert "0.6 s" in info.value.message


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_cancel_cuts_calls_waiting_on_a_hung_upstream_at_once(keyless: dict[str, Fake], name: str,
                                                             streaming: bool) -> None:
    """What the app's lifespan end (and SIGTERM) does: no call keeps the process alive."""
    fake = keyless[name]
    upstreams = Upstreams(timeout=60)
    provider = type(fake.provider)(upstreams)
    call = fake.call("hang-stream" if streaming else "hang", key=None)
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(stream_error(provider, call) if streaming else provider.complete(call))
        except ProviderError as error:
            outcome.append(("", error))

    before = len(fake.requests)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started(fake, before + 1)
    time.sleep(0.2)  # the request is read and the upstream is silent
    began = time.monotonic()
    upstreams.cancel()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - began < 5
    received, error = outcome[0]
    origin = {"openai": "OpenAI", "anthropic": "Anthropic"}[name]
    assert (error.status, error.type, error.message) == (
        502, "upstream_cancelled", f"the call to {origin} was cancelled: the server is shutting down")
    assert received == ("echo: " if streaming else "")
    with pytest.raises(ProviderError, match="cancelled"):  # and nothing new starts
        provider.complete(fake.call(key=None))


# --- through the server (a real process), the client and the magic --------------------------------

def project_logs(server: Any, project: str) -> list[dict[str, Any]]:
    found = [p["id"] for p in server.get("/projects", params={"size": 1000}).json()["records"] if p["name"] == project]
    return server.get("/logs", params={"project_id": found[0], "size": 100}).json()["records"] if found else []


def chat_body(fake: Fake, model: str, **extra: Any) -> dict[str, Any]:
    config = {"model": model, "provider": fake.name, "temperature": 0, "other": {"base_url": fake.base_url}}
    return {"project": unique(f"pass-{model}"), "model_config": config, "messages": HELLO, **extra}


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_server_returns_and_logs_every_sample_of_an_upstream_ignoring_n(server: Any, keyless: dict[str, Fake],
                                                                       streaming: bool) -> None:
    """Issue 16.1: the server answered 200 with num_samples 3, one data entry and one log."""
    body = chat_body(keyless["openai"], "ignore-n", num_samples=3, stream=streaming)
    response = server.post("/chat", body)
    if streaming:
        finals = [e for e in parse_events(response) if e["data"][0]["finish_reason"]]
        outputs = {e["data"][0]["index"]: e["data"][0]["output_message"]["content"] for e in finals}
        usage = finals[-1]["usage"]
    else:
        answer = response.json()
        outputs = {d["index"]: d["output"] for d in answer["data"]}
        usage = answer["usage"]
    assert outputs == {i: "echo: hello world" for i in range(3)}
    assert usage == {"prompt_tokens": 6, "generation_tokens": 9, "total_tokens": 15}
    assert sorted((r["index"], r["output"]) for r in project_logs(server, body["project"])) == [
        (i, "echo: hello world") for i in range(3)]


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_server_usage_is_null_when_the_upstream_reported_none(server: Any, keyless: dict[str, Fake], name: str,
                                                             streaming: bool) -> None:
    """Issue 16.3: estimated word counts were shown as token counts."""
    response = server.post("/chat", chat_body(keyless[name], "no-usage", num_samples=2, stream=streaming))
    if streaming:
        usages = [e["usage"] for e in parse_events(response) if e["data"][0]["finish_reason"]]
        assert usages == [None, None]
    else:
        assert response.status_code == 200 and response.json()["usage"] is None


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_server_reports_the_served_model_in_provider_responses(server: Any, keyless: dict[str, Fake], name: str,
                                                              streaming: bool) -> None:
    """Issue 16.8: the served model reaches the client (a stream's final events carry it too)."""
    response = server.post("/chat", chat_body(keyless[name], "test-model", stream=streaming))
    if streaming:
        final = [e for e in parse_events(response) if e["data"][0]["finish_reason"]][-1]
        responses = final["provider_responses"]
    else:
        responses = response.json()["provider_responses"]
    assert responses and responses[0]["model"] == "served-test-model"


def test_client_makes_one_attempt_and_the_server_one_log_when_the_upstream_is_down(server: Any) -> None:
    """Issue 16.4: the 503 was retried 3 times (3-5 s) and the failed call logged 4 times."""
    from hl_notebook.client import HLClient
    from hl_notebook.errors import HLServerError
    from hl_notebook.secrets import Secret

    project = unique("down")
    config = {"model": "m", "provider": "openai", "other": {"base_url": closed_port_url() + "/v1"}}
    client = HLClient(server.base_url, Secret(server.api_key))
    began = time.monotonic()
    with pytest.raises(HLServerError) as info:
        client.chat("/chat", {"project": project, "model_config": config, "messages": HELLO})
    assert time.monotonic() - began < 2
    assert info.value.status_code == 502 and "OpenAI is unreachable at" in str(info.value)
    assert [r["error"]["type"] for r in project_logs(server, project)] == ["upstream_unreachable"]


def test_magic_other_base_url_reaches_the_provider(shell: Any, keyless: dict[str, Fake]) -> None:
    """Issue 16.5: ``--other VAR`` with a base_url sends the call there, with no key anywhere."""
    fake = keyless["openai"]
    before = len(fake.requests)
    shell.user_ns["local"] = {"base_url": fake.base_url}
    frame = shell.run_cell_magic("hlchat", "--provider openai --model test-model --other local", "hello world")
    assert list(frame["output"]) == ["echo: hello world"]
    assert len(fake.requests) == before + 1 and fake.requests[-1]["model"] == "test-model"
    assert "authorization" not in fake.app.state.headers[-1]


def test_upstream_timeout_setting_is_the_servers_default(tmp_path: Any, keyless: dict[str, Fake]) -> None:
    from fastapi.testclient import TestClient

    from hl_notebook.server import create_app
    from hl_notebook.server.__main__ import parse_args
    from hl_notebook.server.settings import ServerSettings

    assert parse_args([]).upstream_timeout == 120.0
    assert parse_args(["--upstream-timeout", "2.5"]).upstream_timeout == 2.5
    for bad in ("0", "-1", "nan", "4000", "soon"):
        with pytest.raises(SystemExit):
            parse_args(["--upstream-timeout", bad])
    app = create_app(ServerSettings(api_key="k" * 20, db_path=str(tmp_path / "t.sqlite"), upstream_timeout=0.3))
    with TestClient(app) as client:
        response = client.post("/v4/chat", json=chat_body(keyless["anthropic"], "hang"), headers={"X-API-KEY": "k" * 20})
    assert response.status_code == 504
    assert response.json()["detail"]["type"] == "upstream_timeout" and "0.3 s" in response.json()["detail"]["message"]


def test_sigterm_ends_the_server_within_seconds_while_an_upstream_hangs(tmp_path: Any, keyless: dict[str, Fake]) -> None:
    """Issue 16.7: uvicorn waits for running requests; one waiting on a silent upstream held SIGTERM."""
    fake = keyless["openai"]
    process = ServerProcess(tmp_path / "term.sqlite").start()
    answers: list[Any] = []
    body = chat_body(fake, "hang", stream=False)
    thread = threading.Thread(target=lambda: answers.append(process.post("/chat", body)), daemon=True)
    try:
        before = len(fake.requests)
        thread.start()
        started(fake, before + 1)
        time.sleep(0.2)
        sigterm_cancels_the_waiting_call(process, thread, answers)
    finally:
        process.stop()


@pytest.mark.parametrize("stream", ["", " --stream"], ids=["complete", "stream"])
def test_frame_shows_the_served_model_beside_the_requested_one(shell: Any, keyless: dict[str, Fake], name: str,
                                                               stream: str) -> None:
    """Issue 16.8: ``model`` is what was asked; ``upstream_model`` what the provider says answered."""
    shell.user_ns["local"] = {"base_url": keyless[name].base_url}
    frame = shell.run_cell_magic("hlchat", f"--provider {name} --model test-model --other local -n 2{stream}",
                                 "hello world")
    assert list(frame["model"]) == ["test-model"] * 2
    assert list(frame["upstream_model"]) == ["served-test-model"] * 2
    assert str(frame["upstream_model"].dtype) == "string"


# --- the llamacpp provider without its extra (the realmodel group runs it with the extra) -------------

def test_llamacpp_without_the_local_extra_is_a_422_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import hl_notebook.server.providers as providers

    monkeypatch.setattr(providers, "find_spec", lambda name: None)
    with pytest.raises(ProviderError) as info:
        providers.get_provider("llamacpp")
    assert (info.value.status, info.value.message) == (
        422, "provider 'llamacpp' needs the optional extra: pip install 'hl_notebook[local]'")


def test_llamacpp_model_names_are_checked_before_anything_loads(tmp_path: Any) -> None:
    from hl_notebook.server.providers.llamacpp import resolve_model

    (tmp_path / "weights.gguf").write_bytes(b"GGUF")
    assert resolve_model(str(tmp_path / "weights.gguf")) == tmp_path / "weights.gguf"
    missing = str(tmp_path / "missing.gguf")
    for model, message in (("gpt-4o", "model 'gpt-4o' is neither smollm2-135m nor a path to a .gguf file"),
                           (missing, f"no GGUF file at {missing!r}"), ("a\x00.gguf", "no GGUF file at 'a\\x00.gguf'"),
                           ("x" * 5000 + ".gguf", f"no GGUF file at {'x' * 5000 + '.gguf'!r}"),
                           ("~nobody-here-at-all/m.gguf", "no GGUF file at '~nobody-here-at-all/m.gguf'")):
        with pytest.raises(ProviderError) as info:
            resolve_model(model)
        assert (info.value.status, info.value.message) == (422, message)
