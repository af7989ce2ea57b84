"""Shared fixtures: the real local server as a process, and a temp SQLite file per test session."""
from __future__ import annotations

import pytest

from support import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One real server process for the session (mock provider, no latency)."""
    process = ServerProcess(tmp_path_factory.mktemp("server") / "hl.sqlite").start()
    yield process
    process.stop()
