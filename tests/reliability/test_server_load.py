"""The local server under concurrent load: 50 clients, 5,000 chat requests, no 5xx, no lost or
duplicated log."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from support import ServerProcess

CLIENTS = 50
REQUESTS = 5000


def test_fifty_clients_five_thousand_requests(tmp_path):
    server = ServerProcess(tmp_path / "load.sqlite").start()
    local = threading.local()

    def call(i: int) -> tuple[int, list[str]]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["X-API-KEY"] = server.api_key
        body = {"messages": [{"role": "user", "content": f"load {i}"}], "project": "load",
                "model_config": {"model": "m", "provider": "mock", "temperature": 0}}
        response = session.post(server.base_url + "/chat", json=body, timeout=120)
        ids = [d["id"] for d in response.json()["data"]] if response.status_code == 200 else []
        return response.status_code, ids

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(call, range(REQUESTS)))
        statuses = [status for status, _ in results]
        assert statuses.count(200) == REQUESTS, {s: statuses.count(s) for s in set(statuses)}
        ids = [log_id for _, found in results for log_id in found]
        assert len(ids) == len(set(ids)) == REQUESTS
        stored = server.log_ids("load")
        assert len(stored) == REQUESTS and set(stored) == set(ids)  # none lost, none twice
    finally:
        server.stop()
