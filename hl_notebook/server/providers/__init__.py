"""Provider registry: ``model_config.provider`` -> the backend that answers it.

Why: the chat pipeline stays provider-agnostic; pass-through modules are imported only when used.
"""
from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING

from .base import Provider, ProviderError
from .mock import MockProvider

if TYPE_CHECKING:
    from .upstream import Upstreams


def get_provider(name: str, *, mock_latency_ms: float = 0.0, upstreams: Upstreams | None = None) -> Provider:
    """The provider for ``name``; unsupported providers are a 422 provider error (spec §8).

    ``upstreams`` are the app's upstream connections (their timeout, cut when the app stops); the
    pass-through providers use a process-wide default without it.
    """
    if name == "mock":
        return MockProvider(mock_latency_ms)
    if name in ("openai", "anthropic"):
        from .upstream import DEFAULT_UPSTREAMS

        if name == "openai":
            from .openai import OpenAIProvider
            return OpenAIProvider(upstreams or DEFAULT_UPSTREAMS)
        from .anthropic import AnthropicProvider
        return AnthropicProvider(upstreams or DEFAULT_UPSTREAMS)
    if name == "llamacpp":
        if find_spec("llama_cpp") is None:
            raise ProviderError("provider 'llamacpp' needs the optional extra: pip install 'hl_notebook[local]'",
                                status=422, type="unprocessable_entity_error", origin="Humanloop")
        from .llamacpp import LlamaCppProvider
        return LlamaCppProvider(upstreams)
    raise ProviderError(f"provider {name!r} is not supported by this server (use mock, openai, anthropic or llamacpp)",
                        status=422, type="unprocessable_entity_error", origin="Humanloop")
