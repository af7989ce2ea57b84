"""Clients that leave in the middle of a stream, against the real server process (issue 10).

Why: a stream the client abandons must be closed by the server, explicitly and at once, and logged
as ``client_closed``; left to the garbage collector, its clean-up ran on an arbitrary thread that
could already hold the store's write lock, and every later chat hung (pitfall 18). Only a real
process under concurrent load shows that, and only a real SIGTERM shows the server still stops.
"""
from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from hl_notebook.server.chat import ChatRun
from hl_notebook.server.schemas import ChatRequest
from hl_notebook.server.store import Store
from support import ServerProcess
from tests.server.helpers import HELLO, abandon_stream, logs, mock_config, unique

ABANDONED = 20
CHATS = 300
SAMPLES = 2
LONG_MESSAGE = [{"role": "user", "content": " ".join(f"word{i}" for i in range(400))}]


def chat_once(server: ServerProcess, project: str) -> int:
    body = {"project": project, "model_config": mock_config(), "messages": HELLO}
    return requests.post(server.base_url + "/chat", json=body, headers=server.headers, timeout=10).status_code


def test_abandoned_streams_are_closed_logged_and_never_block_the_server(tmp_path: Path):
    db = tmp_path / "abandon.sqlite"
    server = ServerProcess(db).start()
    project = unique("abandoned")
    # 400 words at 5 ms each: every stream is still running (for ~2 s a sample) when abandoned
    body = {"project": project, "stream": True, "num_samples": SAMPLES, "messages": LONG_MESSAGE,
            "model_config": mock_config(other={"mock_latency_ms": 5, "mock_token_delay_ms": 5})}
    try:
        with ThreadPoolExecutor(8) as pool:
            # abandoned streams among the chats: each is cleaned up while chats write their logs
            every = CHATS // ABANDONED
            futures = [pool.submit(abandon_stream, server, body) if i % (every + 1) == 0 else
                       pool.submit(chat_once, server, unique("chat")) for i in range(CHATS + ABANDONED)]
            try:
                results = [future.result() for future in futures]
            finally:  # on the first failure, do not wait for the rest to time out one by one
                pool.shutdown(cancel_futures=True)
        heads = [r for r in results if isinstance(r, bytes)]
        assert len(heads) == ABANDONED and all(head.startswith(b"HTTP/1.1 200") for head in heads)
        assert [r for r in results if not isinstance(r, bytes)] == [200] * CHATS
        server.process.terminate()
        try:
            server.process.wait(10)  # graceful: every request task, abandoned streams included, finishes first
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not stop within 10 s of SIGTERM") from None
    finally:
        server.stop()

    again = ServerProcess(db).start()  # the logs as stored, read back after a clean stop
    try:
        project_id = next(p["id"] for p in again.get("/projects", params={"size": 1000}).json()["records"]
                          if p["name"] == project)
        stored = logs(again, project_id)
    finally:
        again.stop()
    assert len(stored) == ABANDONED * SAMPLES
    assert {log["error"]["type"] for log in stored} == {"client_closed"}
    assert {log["error"]["code"] for log in stored} == {499}
    assert sorted(log["index"] for log in stored) == sorted(list(range(SAMPLES)) * ABANDONED)
    # what was streamed before the client left is kept: the first sample had started
    assert all(log["output"].startswith("mock-model: word0") for log in stored if log["index"] == 0)


def test_closing_an_unfinished_stream_does_no_io_even_under_the_write_lock(tmp_path: Path):
    """What the garbage collector did: close the event generator on a thread that holds the write
    lock. The close must return (no log written, no lock taken); ``abandon()`` writes the log."""
    store = Store(tmp_path / "close.sqlite")
    project = unique("closed")
    body = ChatRequest.model_validate({"project": project, "stream": True, "messages": LONG_MESSAGE,
                                       "model_config": mock_config()})
    run = ChatRun(store, "chat", body, 0.0)
    events = run.stream_events()
    assert next(events)["data"][0]["output"] == "mock-model:"
    closed = threading.Event()

    def close_holding_the_lock() -> None:
        with store.write():
            events.close()
        closed.set()

    threading.Thread(target=close_holding_the_lock, daemon=True).start()
    assert closed.wait(10), "closing the stream took the store's write lock: a deadlock"
    assert store.project_by_name(project) is None  # nothing written by the close itself
    run.abandon()
    project_id = store.project_by_name(project)["id"]
    rows, total = store.logs(project_id, 0, 10)
    assert total == 1 and json.loads(rows[0]["error"])["type"] == "client_closed"
