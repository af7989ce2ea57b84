"""Where calls go: an explicit URL, ``%config``, ``$HUMANLOOP_BASE_URL``, else the embedded server.

Why: precedence (conventions §2.3) is decided in one place; the key comes from the environment
variable ``HLSettings.api_key_env`` names, never from a setting, so ``%config`` cannot print it.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from .client import HLClient, RetryPolicy
from .config import HLSettings
from .errors import HLConfigError
from .secrets import Secret

_clients: dict[tuple, HLClient] = {}
_configs: dict[tuple[str, str], dict[str, Any]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Connection:
    """A client plus what the front ends need to know about its server."""

    client: HLClient
    embedded: bool

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
        return HLSettings.instance().provider or ("mock" if self.embedded else None)


def connect(base_url: str | None = None, api_key: str | None = None) -> Connection:
    """The connection for these overrides and the current settings (clients are reused)."""
    settings = HLSettings.instance()
    url = base_url or settings.base_url or os.environ.get("HUMANLOOP_BASE_URL", "")
    if url:
        if not url.startswith(("http://", "https://")):
            raise HLConfigError(f"base URL {url!r} must start with http:// or https://")
        key = api_key or os.environ.get(settings.api_key_env)
        if not key:
            raise HLConfigError(f"no API key for {url}: set the {settings.api_key_env} environment variable")
        return Connection(_client(url, Secret(key), settings), embedded=False)
    from . import embedded

    server, started = embedded.shared(settings.mock_latency_ms)
    if started:
        print(f"hlchat: using the local server at {server.base_url} (mock provider); "
              "set HUMANLOOP_BASE_URL to use another", file=sys.stderr)
    return Connection(_client(server.base_url, server.api_key, settings), embedded=True)


def _client(url: str, key: Secret, settings: HLSettings) -> HLClient:
    policy = RetryPolicy(max_retries=settings.max_retries, backoff_max=settings.backoff_max)
    identity = (url, hashlib.sha256(key.reveal().encode()).hexdigest(), settings.connect_timeout, settings.read_timeout, policy)
    with _lock:
        client = _clients.get(identity)
        if client is None:
            client = HLClient(url, key, connect_timeout=settings.connect_timeout,
                              read_timeout=settings.read_timeout, retry=policy)
            _clients[identity] = client
        return client
