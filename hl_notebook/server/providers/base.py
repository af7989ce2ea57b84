"""The provider contract: what the chat endpoints hand a model provider and what they get back.

Why: the four chat endpoints share one pipeline (render -> provider -> store); providers plug in
behind this small, synchronous interface so mock and pass-through backends are interchangeable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol


@dataclass(frozen=True)
class ProviderCall:
    """One chat call as a provider sees it (spec §5: config + rendered messages).

    Attributes:
        config: the model config parameters (model, provider, temperature, top_p, max_tokens,
            stop, presence_penalty, frequency_penalty, seed, other, tools, response_format).
            Defaults of spec §5 are already applied; ``max_tokens == -1`` means "no limit".
        messages: rendered chat messages (template + request), wire dicts.
        num_samples: how many generations to return (spec §2 ``num_samples``).
        api_keys: per-call provider keys from the body's ``provider_api_keys``; never log these.
        user: end-user id to pass through, or None.
        tool_choice: the request's ``tool_choice`` (or None).
        response_format: request-level ``response_format`` (or None).
    """

    config: dict[str, Any]
    messages: list[dict[str, Any]]
    num_samples: int = 1
    api_keys: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    tool_choice: Any = None
    response_format: Any = None


@dataclass
class Generation:
    """One sample's result. ``finish_reason`` uses Humanloop's spelling: stop | length | tool_call."""

    index: int
    text: str
    finish_reason: str | None = "stop"
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class ProviderResult:
    """A completed call: one Generation per sample plus usage and the raw provider payloads.

    Token counts are the provider's own, summed over every upstream request the call made; None
    when any of them went unreported (then the response's ``usage`` is null, never an estimate).
    ``provider_request`` must never contain a key (it is returned to the caller and stored).
    """

    generations: list[Generation]
    prompt_tokens: int | None
    generation_tokens: int | None
    provider_request: dict[str, Any] = field(default_factory=dict)
    provider_responses: list[Any] = field(default_factory=list)


@dataclass
class StreamDelta:
    """One streamed piece of one sample. The last piece of a sample has ``finish_reason`` set."""

    index: int
    text: str
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class StreamUsage:
    """Sent once, after all deltas: the provider's token counts (None when it reported none) and
    what was sent; ``provider_responses`` holds what the provider said about each request besides
    the text (its ``model``, ids, usage), as the non-streaming ``provider_responses`` would."""

    prompt_tokens: int | None
    generation_tokens: int | None
    provider_request: dict[str, Any] = field(default_factory=dict)
    provider_responses: list[Any] = field(default_factory=list)


class ProviderError(Exception):
    """A provider failure, mapped onto the spec §8 object ``{type, message, code, origin}``.

    ``status`` is the HTTP status the chat endpoint answers with (auth -> 401, rate limit -> 429,
    overloaded -> 503, unreachable or cancelled -> 502, timed out -> 504, other -> 502, invalid
    request -> 422). ``message`` must hold no key.
    """

    def __init__(self, message: str, *, status: int = 502, type: str = "provider_error",
                 origin: str = "Humanloop", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.origin = origin
        self.retry_after = retry_after

    def detail(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "code": self.status, "origin": self.origin}


class Provider(Protocol):
    """A model backend. Both methods are synchronous and run on the server's worker threads.

    A provider may also offer ``async def complete_async(call) -> ProviderResult``: a non-streaming
    call then runs on the event loop and holds no thread while it waits (the mock awaits its
    latency so); ``chat.ChatRun`` uses it when present."""

    def complete(self, call: ProviderCall) -> ProviderResult:
        """Exactly ``call.num_samples`` generations, indices 0..n-1."""
        ...

    def stream(self, call: ProviderCall) -> Iterator[StreamDelta | StreamUsage]:
        """Yield deltas (samples may interleave), each sample ending with a finish_reason delta,
        then at most one StreamUsage. Raise ProviderError on failure (also mid-stream)."""
        ...
