"""Shared fixtures: the real local server as a process, an IPython shell with the extension loaded,
and a private HL_NOTEBOOK_HOME so tests never touch the user's history or embedded database."""
from __future__ import annotations

import os
import tempfile

# before hl_notebook is imported anywhere: history, cache and embedded DB go to a temp folder
os.environ["HL_NOTEBOOK_HOME"] = tempfile.mkdtemp(prefix="hl-notebook-tests-")
for variable in ("HUMANLOOP_BASE_URL", "HUMANLOOP_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
    os.environ.pop(variable, None)

import pytest  # noqa: E402

from support import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One real server process for the session (mock provider, no latency)."""
    process = ServerProcess(tmp_path_factory.mktemp("server") / "hl.sqlite").start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def fresh_settings():
    """Every test starts from default HLSettings (traitlets singletons outlive tests otherwise)."""
    from hl_notebook.config import HLSettings

    HLSettings.clear_instance()
    yield
    HLSettings.clear_instance()


@pytest.fixture(scope="session")
def ipython():
    """A real InteractiveShell with the extension loaded (history off)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(history_length=0)
    shell.history_manager.enabled = False
    shell.run_line_magic("load_ext", "hl_notebook")
    return shell


@pytest.fixture
def shell(ipython, server, monkeypatch):
    """The shell pointed at the session's server process, with fresh user variables."""
    from hl_notebook.config import HLSettings

    monkeypatch.setenv("HUMANLOOP_BASE_URL", server.base_url)
    monkeypatch.setenv("HUMANLOOP_API_KEY", server.api_key)
    # %config writes into the shell's config too, and a new HLSettings reads it from there: start clean
    ipython.config.pop("HLSettings", None)
    settings = HLSettings.instance(parent=ipython)
    settings.provider = "mock"  # the server process is not "embedded", so say what it serves
    if settings not in ipython.configurables:
        ipython.configurables[:] = [c for c in ipython.configurables if type(c).__name__ != "HLSettings"]
        ipython.configurables.append(settings)
    before = set(ipython.user_ns)
    yield ipython
    for name in set(ipython.user_ns) - before:
        ipython.user_ns.pop(name, None)


@pytest.fixture
def point(monkeypatch):
    """Point hl_notebook (env and settings) at a server process serving the mock provider."""
    from hl_notebook.config import HLSettings

    def use(server: ServerProcess) -> ServerProcess:
        monkeypatch.setenv("HUMANLOOP_BASE_URL", server.base_url)
        monkeypatch.setenv("HUMANLOOP_API_KEY", server.api_key)
        HLSettings.instance().provider = "mock"
        return server
    return use
