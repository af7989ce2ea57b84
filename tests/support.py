"""Test support: run the real local server as a process on a free loopback port.

Why: the client and the SDK are tested against the server the way users run it, over real HTTP.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests

URL_LINE = re.compile(r"hl_notebook server at (http://\S+)")


def closed_port_url() -> str:
    """A loopback URL where nothing listens (bound, then closed): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class ServerProcess:
    """``python -m hl_notebook.server`` with its own SQLite file; ``base_url`` ends in ``/v4``."""

    db_path: Path
    api_key: str = "test-key-0123456789"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    output: list[str] = field(default_factory=list)
    _process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "ServerProcess":
        command = [sys.executable, "-m", "hl_notebook.server", "--port", "0", "--db", str(self.db_path),
                   "--api-key", self.api_key, *self.extra_args]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         env={**os.environ, **self.env})
        found = threading.Event()

        def pump() -> None:
            assert self._process and self._process.stdout
            for line in self._process.stdout:
                self.output.append(line)
                match = URL_LINE.search(line)
                if match and not found.is_set():
                    self.base_url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout) or not self.base_url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-KEY": self.api_key}

    def post(self, path: str, body: dict, **kwargs) -> requests.Response:
        return requests.post(self.base_url + path, json=body, headers=self.headers, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.base_url + path, headers=self.headers, timeout=60, **kwargs)
