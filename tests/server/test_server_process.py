"""``python -m hl_notebook.server`` as a process: safe defaults, persistence, the body-size limit.

Why: these behaviours live in the CLI and in the process's lifetime (flags, stdout, the SQLite file
across a restart, bytes on the socket), so only a real process shows them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.server.helpers import HELLO, mock_config, ok, unique
from support import URL_LINE, ServerProcess

TOO_LARGE = {"detail": "request body too large"}
LIMIT = 2000


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HL_NOTEBOOK_API_KEY"}


# -- safe defaults -------------------------------------------------------------------------------
def test_non_loopback_host_without_a_key_refuses_to_start(tmp_path: Path):
    db = tmp_path / "never.sqlite"
    result = subprocess.run([sys.executable, "-m", "hl_notebook.server", "--host", "0.0.0.0", "--port", "0",
                             "--db", str(db)], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "hl_notebook server at" not in result.stdout
    assert "0.0.0.0" in result.stderr and "--api-key" in result.stderr and "HL_NOTEBOOK_API_KEY" in result.stderr
    assert not db.exists()


class Launched:
    """A server process started with our own arguments, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.url = ""
        self.process = subprocess.Popen([sys.executable, "-m", "hl_notebook.server", *args], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = URL_LINE.search(line)
            if match and not self.url:
                self.url = match.group(1)
                self._started.set()
        self._started.set()

    def wait_started(self) -> str:
        assert self._started.wait(60) and self.url, "".join(self.lines)
        return self.url

    def stop(self) -> str:
        """Terminate, then return everything the process printed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        return "".join(self.lines)



@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_a_usage_line(tmp_path: Path, port: str):
    """It was an OverflowError traceback from ``bind``, after the key was generated."""
    result = subprocess.run([sys.executable, "-m", "hl_notebook.server", "--port", port, "--db",
                             str(tmp_path / "never.sqlite")], env=clean_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"argument --port: {port} is not a port (0 to 65535; "
                                                            "0 picks a free one)")


def test_a_port_in_use_or_a_host_that_is_not_ours_is_one_line(tmp_path: Path):
    """Both were an OSError traceback from ``bind``."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for host, expected in (("127.0.0.1", f"cannot listen on 127.0.0.1:{port}: address already in use"),
                               ("192.0.2.1", f"cannot listen on 192.0.2.1:{port}: cannot assign requested address")):
            result = subprocess.run([sys.executable, "-m", "hl_notebook.server", "--host", host, "--port", str(port),
                                     "--api-key", "k" * 20, "--db", str(tmp_path / "never.sqlite")],
                                    env=clean_env(), capture_output=True, text=True, timeout=60)
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            assert result.stderr.strip().splitlines() == [expected]

def test_loopback_without_a_key_prints_a_generated_key_exactly_once(tmp_path: Path):
    launched = Launched(["--port", "0", "--db", str(tmp_path / "gen.sqlite")], clean_env())
    try:
        url = launched.wait_started()
        key_lines = [line for line in launched.lines if "generated API key" in line]
        assert len(key_lines) == 1
        key = key_lines[0].rsplit(":", 1)[1].strip()
        assert len(key) >= 16
        assert requests.get(url + "/projects", headers={"X-API-KEY": key}, timeout=60).status_code == 200
        chat = requests.post(url + "/chat", headers={"X-API-KEY": key}, timeout=60,
                             json={"model_config": mock_config(), "messages": HELLO})
        assert chat.status_code == 200
        assert requests.get(url + "/projects", timeout=60).status_code == 401
    finally:
        output = launched.stop()
    assert output.count(key) == 1


def test_an_explicit_key_is_never_printed(tmp_path: Path):
    key = "explicit-" + uuid.uuid4().hex
    launched = Launched(["--port", "0", "--db", str(tmp_path / "k.sqlite"), "--api-key", key], clean_env())
    try:
        url = launched.wait_started()
        assert requests.get(url + "/projects", headers={"X-API-KEY": key}, timeout=60).status_code == 200
    finally:
        output = launched.stop()
    assert key not in output and "generated API key" not in output


def test_key_from_the_environment_is_used(tmp_path: Path):
    key = "from-env-" + uuid.uuid4().hex
    launched = Launched(["--port", "0", "--db", str(tmp_path / "e.sqlite")],
                        {**clean_env(), "HL_NOTEBOOK_API_KEY": key})
    try:
        url = launched.wait_started()
        assert requests.get(url + "/projects", headers={"X-API-KEY": key}, timeout=60).status_code == 200
    finally:
        output = launched.stop()
    assert "generated API key" not in output and key not in output


# -- persistence ---------------------------------------------------------------------------------
def test_state_survives_a_restart_on_the_same_db(tmp_path: Path):
    db = tmp_path / "persist.sqlite"
    first = ServerProcess(db).start()
    try:
        registered = ok(first.post("/model-configs", {"project": "kept", **mock_config("kept-model")}))
        project_id, config_id = registered["project_id"], registered["config"]["id"]
        second_config = ok(first.post("/model-configs", {"project_id": project_id, **mock_config("other")}))
        staging = ok(requests.patch(first.base_url + f"/projects/{project_id}/deploy-config", headers=first.headers,
                                    json={"config_id": second_config["config"]["id"],
                                          "environments": [{"name": "staging"}]}, timeout=60))
        chat = ok(first.post("/chat-deployed", {"project_id": project_id, "messages": HELLO, "num_samples": 2,
                                                "session_reference_id": "persisted-session"}))
        before = {
            "project": ok(first.get(f"/projects/{project_id}")),
            "config": ok(first.get(f"/model-configs/{config_id}")),
            "configs": ok(first.get(f"/projects/{project_id}/configs")),
            "deployed": ok(first.get(f"/projects/{project_id}/deployed-configs")),
            "active": ok(first.get(f"/projects/{project_id}/active-config")),
            "logs": ok(first.get("/logs", params={"project_id": project_id})),
        }
    finally:
        first.stop()

    second = ServerProcess(db).start()
    try:
        assert ok(second.get(f"/projects/{project_id}")) == before["project"]
        assert ok(second.get(f"/model-configs/{config_id}")) == before["config"]
        assert ok(second.get(f"/projects/{project_id}/configs")) == before["configs"]
        assert ok(second.get(f"/projects/{project_id}/deployed-configs")) == before["deployed"] == staging
        assert ok(second.get(f"/projects/{project_id}/active-config")) == before["active"]
        logs = ok(second.get("/logs", params={"project_id": project_id}))
        assert logs == before["logs"]
        assert [r["id"] for r in logs["records"]] == [d["id"] for d in chat["data"]]
        assert {r["output"] for r in logs["records"]} == {"kept-model: hello there world"}

        # deployments and sessions still work as before the restart
        again = ok(second.post("/chat-deployed", {"project_id": project_id, "messages": HELLO,
                                                  "session_reference_id": "persisted-session"}))
        assert again["data"][0]["model_config_id"] == config_id
        assert again["session_id"] == chat["session_id"]
        staged = ok(second.post("/chat-deployed", {"project_id": project_id, "environment": "staging",
                                                   "messages": HELLO}))
        assert staged["data"][0]["model_config_id"] == second_config["config"]["id"]
        assert ok(second.get("/logs", params={"project_id": project_id}))["total"] == 4
    finally:
        second.stop()


# -- body size limit (decisions table: 413) ------------------------------------------------------
@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("limited") / "limited.sqlite",
                            extra_args=["--max-body-bytes", str(LIMIT)]).start()
    yield process
    process.stop()


def chat_body(size: int) -> bytes:
    """A valid /chat body of exactly ``size`` bytes."""
    skeleton = {"project": "limits", "model_config": mock_config(), "messages": [{"role": "user", "content": ""}]}
    padding = size - len(json.dumps(skeleton).encode())
    skeleton["messages"][0]["content"] = "x" * padding
    body = json.dumps(skeleton).encode()
    assert len(body) == size
    return body


def chunked(data: bytes, size: int = 500) -> Iterator[bytes]:
    """A generator body: requests sends it chunked, with no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def post_raw(server: ServerProcess, path: str, data: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(server.base_url + path, data=data, timeout=60,
                         headers={"Content-Type": "application/json", **(headers if headers is not None else server.headers)})


def assert_too_large(response: requests.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == TOO_LARGE


@pytest.mark.parametrize("size,status", [(LIMIT, 200), (LIMIT + 1, 413)])
def test_body_limit_with_content_length(limited, size, status):
    response = post_raw(limited, "/chat", chat_body(size))
    assert response.request.headers["Content-Length"] == str(size)
    if status == 413:
        assert_too_large(response)
    else:
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("size,status", [(LIMIT, 200), (LIMIT + 1, 413), (3 * LIMIT, 413)])
def test_body_limit_with_a_chunked_body(limited, size, status):
    response = post_raw(limited, "/chat", chunked(chat_body(size)))
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    if status == 413:
        assert_too_large(response)
    else:
        assert response.status_code == 200, response.text


def test_body_limit_on_management_routes_and_before_auth(limited):
    body = json.dumps({"name": "x" * (2 * LIMIT)}).encode()
    assert_too_large(post_raw(limited, "/projects", body))
    assert_too_large(post_raw(limited, "/projects", chunked(body)))
    assert_too_large(post_raw(limited, "/chat", body, headers={}))



# -- concurrency and signals ---------------------------------------------------------------------
def test_simultaneous_creations_of_one_project_make_one(server):
    """20 POST /projects with one name at once: one 201, the others the usual 'already exists' 422.
    Ten rounds, as a check-then-insert race needs several tries to show."""
    with ThreadPoolExecutor(20) as pool:
        for _ in range(10):
            name = unique("race")
            barrier = threading.Barrier(20)

            def create(_: int) -> requests.Response:
                barrier.wait(30)
                return server.post("/projects", {"name": name})

            responses = list(pool.map(create, range(20)))
            assert sorted(r.status_code for r in responses) == [201] + [422] * 19
            taken = {"detail": [{"loc": ["body", "name"], "msg": f"a project named {name!r} already exists",
                                 "type": "value_error"}]}
            assert all(r.json() == taken for r in responses if r.status_code == 422)
            names = [p["name"] for p in ok(server.get("/projects", params={"size": 1000}))["records"]]
            assert names.count(name) == 1


def test_ctrl_c_stops_the_standalone_server_quietly(tmp_path: Path):
    launched = Launched(["--port", "0", "--db", str(tmp_path / "sigint.sqlite"), "--api-key", "sigint-key"],
                        clean_env())
    try:
        url = launched.wait_started()
        headers = {"X-API-KEY": "sigint-key"}
        body = {"model_config": mock_config(other={"mock_latency_ms": 2000}), "messages": HELLO}
        answers: list[int] = []
        running = threading.Thread(target=lambda: answers.append(
            requests.post(url + "/chat", json=body, headers=headers, timeout=60).status_code))
        running.start()
        while requests.get(url + "/server-stats", headers=headers, timeout=60).json()["in_flight"] < 1:
            pass
        launched.process.send_signal(signal.SIGINT)
        code = launched.process.wait(10)
        running.join(60)
    finally:
        output = launched.stop()
    assert answers == [200]  # the call in progress finished first
    assert code in (0, 130)
    after = output.split("hl_notebook server at", 1)[1].splitlines()[1:]
    assert len(after) <= 1, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
