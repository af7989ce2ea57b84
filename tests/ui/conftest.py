"""Fixtures for the browser tests: a JupyterLab server of our own and a headless system Chromium.

Why: the panel is a widget view; only a real Lab page shows whether its controls render, take input
and show the results table. Lab runs on a free loopback port with no token, on a temp copy of
``notebooks/``, with private Jupyter and HL_NOTEBOOK_HOME folders so nothing leaks between runs (no
reopened tabs, no user settings, a fresh embedded database). The browser is the system Chromium
(``apt-get install chromium``); ``playwright install`` is never needed. Missing tools fail the test
with a message saying what to install: CI installs them, so a skip would hide a broken set-up.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
LAB_START_TIMEOUT_S = 90


def chromium_path() -> str:
    """The system Chromium: $HL_NOTEBOOK_CHROMIUM, else /usr/bin/chromium or one on PATH."""
    candidates = [os.environ.get("HL_NOTEBOOK_CHROMIUM", ""), "/usr/bin/chromium",
                  shutil.which("chromium") or "", shutil.which("chromium-browser") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no Chromium found (looked at $HL_NOTEBOOK_CHROMIUM, /usr/bin/chromium, PATH): "
                "apt-get install -y chromium", pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class Lab:
    """A running ``jupyter lab`` process: ``url`` is its base URL, ``root`` its notebook folder."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.work = work
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "jupyter-lab.log"
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("HUMANLOOP_BASE_URL", None)  # the kernel uses the embedded server with the mock provider
        env.pop("HUMANLOOP_API_KEY", None)
        home = self.work / "hl-home"
        config, data, runtime = self.work / "jupyter-config", self.work / "jupyter-data", self.work / "jupyter-runtime"
        settings, workspaces = self.work / "lab-settings", self.work / "lab-workspaces"
        for folder in (home, config, data, runtime, settings, workspaces):
            folder.mkdir(parents=True, exist_ok=True)
        # no "get notified about Jupyter news?" toast and no update check over the (absent) network
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env.update(HL_NOTEBOOK_HOME=str(home), JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(data),
                   JUPYTER_RUNTIME_DIR=str(runtime), JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(workspaces), PYTHONUNBUFFERED="1",
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
        return env

    def start(self) -> "Lab":
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.port}",
                   "--ServerApp.port_retries=0", "--ServerApp.token=", "--ServerApp.password=",
                   "--ServerApp.ip=127.0.0.1", "--allow-root", "--LabApp.news_url=None",
                   f"--ServerApp.root_dir={self.root}"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment(),
                                            cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer on {self.url} in {LAB_START_TIMEOUT_S} s:\n{_tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM (Lab then shuts its kernels down), SIGKILL to its own process group if it hangs."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the group Lab leads (start_new_session): Lab and its kernels only
            process.wait(10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """JupyterLab (which also serves Notebook 7 at /notebooks/) on a temp copy of notebooks/, shared by
    the tests of a module (starting it is the slow part), stopped by PID at the end (also on failure)."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.fail("jupyterlab is not installed in this environment: pip install jupyterlab", pytrace=False)
    work = tmp_path_factory.mktemp("lab")
    root = work / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    server = Lab(root, work)
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def chromium_page(width: int, height: int) -> Iterator[Any]:
    """A fresh headless Chromium page of this viewport, closed with its browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install playwright (the Python wheel only; "
                    "do not run `playwright install`, the system Chromium is used)", pytrace=False)
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.set_default_timeout(30_000)
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def page():
    """A 1400x1400 page: a whole report or panel and its table fit."""
    with chromium_page(1400, 1400) as made:
        yield made


@pytest.fixture
def laptop_page():
    """A 1024x800 page: a small laptop screen, where nothing of the panel may be cut off."""
    with chromium_page(1024, 800) as made:
        yield made
