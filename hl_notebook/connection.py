"""Where calls go: an explicit URL, ``%config``, ``$HUMANLOOP_BASE_URL``, else the embedded server.

Why: precedence (conventions §2.3) is decided in one place; the key comes from the environment
variable ``HLSettings.api_key_env`` names, never from a setting, so ``%config`` cannot print it.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from .client import HLClient, RetryPolicy
from .config import HLSettings
from .errors import HLConfigError
from .secrets import Secret, provider_keys_from_env

_clients: dict[tuple, HLClient] = {}
_configs: dict[tuple[str, str], dict[str, Any]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Connection:
    """A client, the provider keys to send with its chat calls, and what front ends need to know
    about its server. Keys are ``Secret`` objects: they show as ``***`` in any repr or traceback."""

    client: HLClient
    embedded: bool
    provider_api_keys: dict[str, Secret] = field(default_factory=dict, repr=False)

    def config(self, config_id: str) -> dict[str, Any]:
        """A registered config's parameters (configs are immutable, so they are cached)."""
        found = _configs.get((self.client.base_url, config_id))
        if found is None:
            found = self.client.get(f"/model-configs/{config_id}")
            _configs[(self.client.base_url, config_id)] = found
        return found

    @property
    def default_provider(self) -> str | None:
        """``HLSettings.provider``, else ``mock`` on the embedded server, else the wire default."""
        return default_provider(None if self.embedded else self.client.base_url)


def configured_url(base_url: str | None = None) -> str:
    """The server URL from the override, ``%config`` or the environment; "" means the embedded server."""
    return base_url or HLSettings.instance().base_url or os.environ.get("HUMANLOOP_BASE_URL", "")


def default_provider(base_url: str | None = None) -> str | None:
    """``Connection.default_provider`` known without connecting (planning must not start a server)."""
    return HLSettings.instance().provider or (None if configured_url(base_url) else "mock")


def connect(base_url: str | None = None, api_key: str | None = None) -> Connection:
    """The connection for these overrides and the current settings (clients are reused)."""
    settings = HLSettings.instance()
    url = configured_url(base_url)
    if url:
        if not url.startswith(("http://", "https://")):
            raise HLConfigError(f"base URL {url!r} must start with http:// or https://")
        key = api_key or os.environ.get(settings.api_key_env)
        if not key:
            raise HLConfigError(f"no API key for {url}: set the {settings.api_key_env} environment variable")
        return Connection(_client(url, Secret(key), settings), embedded=False,
                          provider_api_keys=provider_keys_from_env())
    from . import embedded

    server, started = embedded.shared(settings.mock_latency_ms)
    if started:
        print(f"hlchat: using the local server at {server.base_url} (mock provider); "
              "set HUMANLOOP_BASE_URL to use another", file=sys.stderr)
    return Connection(_client(server.base_url, server.api_key, settings), embedded=True,
                      provider_api_keys=provider_keys_from_env())


def _client(url: str, key: Secret, settings: HLSettings) -> HLClient:
    policy = RetryPolicy(max_retries=settings.max_retries, backoff_max=settings.backoff_max)
    identity = (url, hashlib.sha256(key.reveal().encode()).hexdigest(), settings.connect_timeout,
                settings.read_timeout, settings.call_deadline, policy)
    with _lock:
        client = _clients.get(identity)
        if client is None:
            client = HLClient(url, key, connect_timeout=settings.connect_timeout,
                              read_timeout=settings.read_timeout, deadline=settings.call_deadline, retry=policy)
            _clients[identity] = client
        return client
