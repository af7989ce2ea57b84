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
