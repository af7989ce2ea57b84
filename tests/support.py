"""Test support: run the real local server as a process on a free loopback port.

Why: the client and the SDK are tested against the server the way users run it, over real HTTP.
Starting and stopping the child is ``hl_notebook.server.process``'s job (shared with bench/).
"""
from __future__ import annotations

import socket
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import requests

from hl_notebook.server import process
from hl_notebook.server.process import URL_LINE
from postgres import database_for, test_workers

__all__ = ["SERVED_PROVIDERS", "URL_LINE", "ServerProcess", "closed_port_url"]

# what this install's server answers: llamacpp only with the optional extra (pip install '.[local]')
SERVED_PROVIDERS = ("anthropic", *(("llamacpp",) if find_spec("llama_cpp") else ()), "mock", "openai")


def closed_port_url() -> str:
    """A loopback URL where nothing listens (bound, then closed): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class ServerProcess(process.ServerProcess):
    """``python -m hl_notebook.server`` with its own SQLite file — or, with ``HL_TEST_DB=postgresql``,
    its own PostgreSQL database named after that file (``postgres.py``); ``base_url`` ends in ``/v4``."""

    def __init__(self, db_path: Path, api_key: str = "test-key-0123456789", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.db_path, self.api_key, self.extra_args = Path(db_path), api_key, list(extra_args or [])
        super().__init__([], env=env)

    def start(self, timeout: float = 60) -> "ServerProcess":
        self.command = process.local_server_command(database_for(self.db_path), self.api_key,
                                                    [*test_workers(), *self.extra_args])
        super().start(timeout)
        return self

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-KEY": self.api_key}

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return requests.post(self.base_url + path, json=body, headers=self.headers, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base_url + path, headers=self.headers, timeout=60, **kwargs)

    def log_ids(self, project: str) -> list[str]:
        """Every log id stored for the project named ``project`` (all pages, in log order; [] if none)."""
        found = [p["id"] for p in self.get("/projects", params={"size": 1000}).json()["records"] if p["name"] == project]
        ids: list[str] = []
        page = 0
        while found:
            chunk = self.get("/logs", params={"project_id": found[0], "page": page, "size": 1000}).json()
            ids += [record["id"] for record in chunk["records"]]
            if not chunk["records"] or len(ids) >= chunk["total"]:
                break
            page += 1
        return ids
