"""Provider registry: ``model_config.provider`` -> the backend that answers it.

Why: the chat pipeline stays provider-agnostic; pass-through modules are imported only when used.
"""
from __future__ import annotations

from .base import Provider, ProviderError
from .mock import MockProvider


def get_provider(name: str, *, mock_latency_ms: float = 0.0) -> Provider:
    """The provider for ``name``; unsupported providers are a 422 provider error (spec §8)."""
    if name == "mock":
        return MockProvider(mock_latency_ms)
    if name == "openai":
        from .openai import OpenAIProvider
        return OpenAIProvider()
    if name == "anthropic":
        from .anthropic import AnthropicProvider
        return AnthropicProvider()
    raise ProviderError(f"provider {name!r} is not supported by this server (use mock, openai or anthropic)",
                        status=422, type="unprocessable_entity_error", origin="Humanloop")
