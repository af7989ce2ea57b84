"""What one caller can take from a shared server: worker threads and bytes (issue 10).

Why: the mock's latency sleeps on a worker thread, and 130 slow calls once left no thread for
``GET /projects`` for 10 s; 1 MB of messages times ``num_samples=100`` once gave a 111 MB response
and 220 MB of database. Checked against a real server process, as users run it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from support import ServerProcess
from tests.server.helpers import HELLO, mock_config, ok

SLOW_CALLS = 140  # more than the server's 128 chat threads


def test_slow_chats_never_starve_the_management_endpoints(tmp_path: Path):
    server = ServerProcess(tmp_path / "slow.sqlite").start()
    body = {"project": "slow", "model_config": mock_config(other={"mock_latency_ms": 60_000}), "messages": HELLO}

    def slow_chat() -> None:
        try:
            requests.post(server.base_url + "/chat", json=body, headers=server.headers, timeout=120)
        except requests.RequestException:
            pass  # the server is killed below, long before these would answer

    pool = ThreadPoolExecutor(SLOW_CALLS)
    try:
        for _ in range(SLOW_CALLS):
            pool.submit(slow_chat)
        # every slow call has arrived (the stats endpoint itself must answer meanwhile)
        while ok(requests.get(server.base_url + "/server-stats", headers=server.headers, timeout=10))["in_flight"] \
                < SLOW_CALLS:
            pass
        listing = requests.get(server.base_url + "/projects", headers=server.headers, timeout=10)
        assert listing.status_code == 200
        registered = requests.post(server.base_url + "/model-configs", json={"project": "fast", **mock_config()},
                                   headers=server.headers, timeout=10)
        assert registered.status_code == 200
    finally:
        server.process.kill()
        server.stop()
        pool.shutdown(wait=True)


def database_bytes(db: Path) -> int:
    """The SQLite file and its WAL and shared-memory files together."""
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def test_a_megabyte_of_messages_times_100_samples_is_stored_and_echoed_once(tmp_path: Path):
    db = tmp_path / "big.sqlite"
    server = ServerProcess(db).start()
    system = " ".join(["lorem"] * 170_000)  # ~1 MB of rendered messages
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "hello there world"}]
    body = {"project": "big", "model_config": mock_config(), "messages": messages, "num_samples": 100}
    try:
        before = database_bytes(db)
        response = requests.post(server.base_url + "/chat", json=body, headers=server.headers, timeout=120)
        assert response.status_code == 200, response.text[:300]
        assert len(response.content) < 3_000_000  # the messages once in data, once in provider_request
        data = response.json()["data"]
        assert len(data) == 100 and [d["index"] for d in data] == list(range(100))
        assert data[0]["messages"][0]["content"] == system  # spec §6: the messages sent, on the first entry
        assert all("messages" not in d for d in data[1:])
        assert database_bytes(db) - before < 4_000_000  # the messages stored once, not once per sample
        project_id = response.json()["project_id"]
        for page in (0, 49):  # every log still returns its messages
            records = ok(requests.get(server.base_url + "/logs", headers=server.headers, timeout=60,
                                      params={"project_id": project_id, "page": page, "size": 2}))["records"]
            assert [r["messages"][0]["content"] == system for r in records] == [True, True]
    finally:
        server.stop()
