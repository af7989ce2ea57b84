"""A real kernel interrupted (SIGINT) during a sweep keeps the finished rows in the --out variable
and in the history."""
from __future__ import annotations

import os
import time

import pytest
import requests
from jupyter_client.manager import start_new_kernel

from support import ServerProcess


@pytest.fixture
def kernel(tmp_path):
    env = {**os.environ, "HL_NOTEBOOK_HOME": str(tmp_path)}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    yield manager, client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def execute(client, code: str, timeout: float = 60) -> dict:
    """Run code; return {"status", "ename", "text"} with stdout and the last result's text."""
    msg_id = client.execute(code)
    text, ename = [], None
    while True:
        message = client.get_iopub_msg(timeout=timeout)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            text.append(content["text"])
        elif kind == "execute_result":
            text.append(content["data"]["text/plain"])
        elif kind == "error":
            ename = content["ename"]
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=timeout)
    return {"status": reply["content"]["status"], "ename": ename, "text": "".join(text)}


def test_sigint_during_a_sweep_keeps_finished_rows(kernel, tmp_path):
    manager, client = kernel
    server = ServerProcess(tmp_path / "k.sqlite", extra_args=["--mock-latency-ms", "100"]).start()
    try:
        setup = execute(client, f"""
import os
os.environ["HUMANLOOP_BASE_URL"] = {server.base_url!r}
os.environ["HUMANLOOP_API_KEY"] = {server.api_key!r}
%load_ext hl_notebook
%config HLSettings.provider = "mock"
many = [{{"n": i}} for i in range(200)]
""")
        assert setup["status"] == "ok", setup
        msg_id = client.execute("%%hlchat --model m --temperature 0 --inputs many --concurrency 2 --out partial\n"
                                "user: say {{n}}")
        deadline = time.monotonic() + 60
        while requests.get(server.base_url + "/server-stats", headers=server.headers, timeout=10).json()["requests"] < 8:
            assert time.monotonic() < deadline, "the sweep never started"
            time.sleep(0.05)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=60)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "HLInterrupted"  # a KeyboardInterrupt subclass
        # one line, not a KeyboardInterrupt traceback through the pool (issue 10: it was ~30 lines)
        [line] = reply["content"]["traceback"]
        assert line.startswith("KeyboardInterrupt: ") and "cancelled; rows so far are in partial" in line, line
        check = execute(client, "import hl_notebook\n"
                                "done = partial[partial['error'].isna()]\n"
                                "print(len(partial), len(done), sorted(set(partial['error_type'].dropna())),"
                                " len(hl_notebook.history()), (done['output'] == 'm: say ' + done['inputs.n']).all(),"
                                " sep='|')")
        rows, done, kinds, history, right = check["text"].strip().split("|")
        assert int(rows) == 200 and 0 < int(done) < 200  # every call a row; cancelled ones say so
        assert kinds == "['HLCancelled']"
        assert right == "True" and int(history) == 200
    finally:
        server.stop()
