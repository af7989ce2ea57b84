"""A team server: several workers on a real PostgreSQL, under load, with a worker killed mid-load.

Why: a shared server must not lose or double a call whatever its workers do; these tests start
their own PostgreSQL cluster (``postgres.py``: initdb + pg_ctl in a temp dir) whichever engine
``HL_TEST_DB`` picks for the rest of the suite.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

import postgres
from hl_notebook.server.process import ServerProcess, local_server_command

KEY = "team-key-0123456789"
HEADERS = {"X-API-KEY": KEY}


@pytest.fixture(scope="module")
def cluster():
    if postgres.binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    found = postgres.Cluster()
    yield found
    found.stop()


def fresh_database(cluster: postgres.Cluster) -> str:
    return postgres.create_database("team_" + uuid.uuid4().hex[:12], cluster.url())


def team_server(url: str, workers: int, *extra: str) -> ServerProcess:
    return ServerProcess(local_server_command(url, KEY, ["--workers", str(workers), *extra])).start()


def body(text: str, project: str = "team", **config: Any) -> dict[str, Any]:
    return {"project": project, "messages": [{"role": "user", "content": text}],
            "model_config": {"provider": "mock", "model": "m", "temperature": 0, **config}}


def stored_log_ids(url: str, project: str) -> list[str]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute(
            "SELECT l.id FROM logs l JOIN projects p ON p.id = l.project_id WHERE p.name = %s", (project,))]


def worker_pids(server: ServerProcess) -> list[int]:
    """The pids of the supervisor's worker processes (its children other than multiprocessing's
    resource tracker)."""
    found = subprocess.run(["pgrep", "-P", str(server.pid), "-f", "spawn_main"], capture_output=True,
                           text=True).stdout.split()
    return [int(pid) for pid in found]


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 60) -> list[int]:
    """The worker pids, once ``count`` workers run and serve (each has published its stats)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(server)
        if len(pids) >= count:
            stats = requests.get(server.base_url + "/server-stats", headers=HEADERS, timeout=30).json()
            if stats["workers"] >= count:
                return pids
        time.sleep(0.2)
    raise AssertionError(f"{count} workers did not start: {worker_pids(server)}")


def busiest_worker(server: ServerProcess, pids: list[int]) -> int:
    """The worker holding the most client connections now (accepts are not spread evenly)."""
    port = server.base_url.split(":")[2].split("/")[0]
    listing = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True).stdout
    return max(pids, key=lambda pid: listing.count(f"pid={pid},"))


class Client:
    """One client thread's session; a call is sent again with its Idempotency-Key when the
    connection breaks (as hl_notebook's own client does), so an answered call is never run twice."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.local = threading.local()

    def session(self) -> requests.Session:
        if getattr(self.local, "session", None) is None:
            self.local.session = requests.Session()
            self.local.session.headers.update(HEADERS)
        return self.local.session

    def call(self, payload: dict[str, Any], key: str, attempts: int = 10) -> tuple[int, list[str], int]:
        """(status, log ids, connection failures) of one call."""
        failures = 0
        for _ in range(attempts):
            try:
                response = self.session().post(self.base_url + "/chat", json=payload, timeout=60,
                                               headers={"Idempotency-Key": key})
            except requests.ConnectionError:
                failures += 1
                self.local.session = None
                time.sleep(0.05)
                continue
            ids = [d["id"] for d in response.json()["data"]] if response.status_code == 200 else []
            return response.status_code, ids, failures
        return 0, [], failures


def run_load(client: Client, project: str, clients: int, requests_total: int,
             during: Any = None) -> list[tuple[int, list[str], int]]:
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client.call, body(f"load {i}", project), f"{project}-{i}") for i in range(requests_total)]
        if during is not None:
            during()
        return [future.result() for future in futures]


def test_fifty_clients_five_thousand_requests_on_four_workers(cluster):
    """The issue's load: 50 clients x 5,000 requests, 4 workers, PostgreSQL: none lost, none twice, no 5xx."""
    url = fresh_database(cluster)
    server = team_server(url, 4)
    try:
        wait_for_workers(server, 4)
        results = run_load(Client(server.base_url), "load", 50, 5000)
        statuses = [status for status, _, _ in results]
        assert statuses.count(200) == 5000, {s: statuses.count(s) for s in set(statuses)}
        ids = [log_id for _, found, _ in results for log_id in found]
        assert len(ids) == len(set(ids)) == 5000
        assert sorted(stored_log_ids(url, "load")) == sorted(ids)
        stats = requests.get(server.base_url + "/server-stats", headers=HEADERS, timeout=10).json()
        assert stats["workers"] >= 2  # the counters of several workers are summed
    finally:
        server.stop()


def test_a_worker_killed_mid_load_loses_no_answered_call(cluster):
    """kill -9 of one of 4 workers while 2,000 calls run: every answered call is stored once, the
    calls it was running are answered by the others (sent again with their key), and the
    supervisor starts a new worker."""
    url = fresh_database(cluster)
    server = team_server(url, 4, "--mock-latency-ms", "20")
    try:
        pids = wait_for_workers(server, 4)
        client = Client(server.base_url)
        victim: list[int] = []

        def kill_one() -> None:
            time.sleep(1.5)
            victim.append(busiest_worker(server, pids))
            os.kill(victim[0], signal.SIGKILL)

        results = run_load(client, "killed", 40, 2000, during=kill_one)
        statuses = [status for status, _, _ in results]
        assert statuses.count(200) == 2000, {s: statuses.count(s) for s in set(statuses)}
        assert sum(failures for _, _, failures in results) > 0, "the kill broke no connection: it came too late"
        ids = [log_id for _, found, _ in results for log_id in found]
        stored = stored_log_ids(url, "killed")
        assert len(stored) == len(set(stored)) == 2000  # one log per call: none lost, none run twice
        assert set(stored) == set(ids)
        replacement = wait_for_workers(server, 4)
        assert victim[0] not in replacement
    finally:
        server.stop()


def test_one_key_sent_to_several_workers_at_once_runs_once(cluster):
    url = fresh_database(cluster)
    server = team_server(url, 4, "--mock-latency-ms", "300")
    try:
        wait_for_workers(server, 4)
        client = Client(server.base_url)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: client.call(body("same call", "once"), "the-one-key"), range(8)))
        assert {status for status, _, _ in results} == {200}
        assert len({tuple(ids) for _, ids, _ in results}) == 1
        assert len(stored_log_ids(url, "once")) == 1
    finally:
        server.stop()


def test_racing_project_creators_on_several_workers_get_one_201(cluster):
    url = fresh_database(cluster)
    server = team_server(url, 4)
    try:
        wait_for_workers(server, 4)
        barrier = threading.Barrier(16)

        def create(_: int) -> int:
            with requests.Session() as session:
                session.headers.update(HEADERS)
                session.get(server.base_url + "/projects", timeout=10)  # connected before the race
                barrier.wait()
                return session.post(server.base_url + "/projects", json={"name": "contested"}, timeout=30).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(create, range(16)))
        assert sorted(statuses) == [201] + [422] * 15
    finally:
        server.stop()


def test_fault_draws_are_shared_by_the_workers(cluster):
    """With --fault-rates, the n-th request with a body meets the same fault on 1 worker or on 3."""
    sequences = []
    for workers in (1, 3):
        server = team_server(fresh_database(cluster), workers, "--faults", "--fault-rates", "500=0.5",
                             "--fault-seed", "7")
        try:
            wait_for_workers(server, workers) if workers > 1 else None
            with requests.Session() as session:
                session.headers.update(HEADERS)
                sequences.append([session.post(server.base_url + "/chat", json=body("draw"), timeout=30).status_code
                                  for _ in range(24)])
        finally:
            server.stop()
    assert sequences[0] == sequences[1]
    assert {200, 500} == set(sequences[0])


def test_workers_on_sqlite_and_an_unreachable_database_are_one_line_refusals(tmp_path, cluster):
    for db, expected in ((str(tmp_path / "one.sqlite"), "needs a PostgreSQL database"),
                         (f"postgresql://hl:secret-pw@127.0.0.1:{postgres._free_port()}/none", "cannot connect")):
        done = subprocess.run(local_server_command(db, KEY, ["--workers", "2"]), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr
        assert "secret-pw" not in done.stderr + done.stdout


def test_a_database_from_a_newer_version_is_refused(cluster):
    url = fresh_database(cluster)
    from hl_notebook.server.store import SCHEMA_VERSION, Store

    Store(url).close()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    done = subprocess.run(local_server_command(url, KEY), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "made by a newer hl_notebook" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_sqlite_migrates_a_database_from_before_schema_versions(tmp_path):
    """A SQLite file made by the previous release (no schema_version, no position column) opens,
    keeps its experiment's config order and reports the current version."""
    import sqlite3

    from hl_notebook.server.store import SCHEMA_VERSION, Store

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE configs (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
    params TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE experiments (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    positive_labels TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE experiment_configs (experiment_id TEXT NOT NULL, config_id TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (experiment_id, config_id));
INSERT INTO projects VALUES ('pr_1', 'old', 0);
INSERT INTO configs VALUES ('config_z', 'pr_1', 'z', NULL, '{"model": "z"}', 0);
INSERT INTO configs VALUES ('config_a', 'pr_1', 'a', NULL, '{"model": "a"}', 0);
INSERT INTO experiments VALUES ('exp_1', 'pr_1', 'e', '[]', 0);
INSERT INTO experiment_configs VALUES ('exp_1', 'config_z', 1);
INSERT INTO experiment_configs VALUES ('exp_1', 'config_a', 1);
""")
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.experiment("exp_1")["config_ids"] == ["config_z", "config_a"]  # the order they were added in
    store.add_experiment_config("exp_1", "config_b")
    assert Store(path).experiment("exp_1")["config_ids"] == ["config_z", "config_a", "config_b"]


def test_the_server_tests_run_on_postgresql_when_asked(cluster, tmp_path):
    """``HL_TEST_DB`` is honoured: a test server started by the suite's helper stores in PostgreSQL."""
    env = {**os.environ, "HL_TEST_DB": cluster.url(), "HL_TEST_WORKERS": "2"}
    script = ("import sys; sys.path.insert(0, 'tests'); from support import ServerProcess; "
              f"s = ServerProcess({str(tmp_path / 'x.sqlite')!r}).start(); print(s.command); s.stop()")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "postgresql://" in done.stdout and "'--workers', '2'" in done.stdout
    assert not (tmp_path / "x.sqlite").exists()


def test_calls_sharing_new_projects_configs_and_payloads_across_workers_never_deadlock(cluster):
    """Calls on 4 workers that create the same new projects, configs and payloads in varying orders:
    no 5xx. PostgreSQL aborts one of two transactions that wait for each other's new rows; when each
    worker committed many calls in one transaction, that was a 500 for some calls (15-25 of 1,500 here)."""
    import random

    url = fresh_database(cluster)
    server = team_server(url, 4)

    def payload(i: int) -> dict[str, Any]:
        draw = random.Random(i)
        return {"project": f"shared-{draw.randrange(4)}-{i // 75}", "inputs": {"a": draw.randrange(3)},
                "messages": [{"role": "user", "content": f"m{draw.randrange(6)}-{i // 75}"}],
                "model_config": {"provider": "mock", "model": f"m{draw.randrange(4)}", "temperature": 0}}

    try:
        wait_for_workers(server, 4)
        client = Client(server.base_url)
        with ThreadPoolExecutor(48) as pool:
            results = list(pool.map(lambda i: client.call(payload(i), f"shared-{i}"), range(1500)))
        statuses = [status for status, _, _ in results]
        assert statuses.count(200) == 1500, {s: statuses.count(s) for s in set(statuses)}
        assert "Deadlock" not in "".join(server.output)
    finally:
        server.stop()


def test_server_stats_add_up_every_workers_counts_and_a_reset_reaches_them_all(cluster):
    """Chat counters and each provider key's counters (``--provider-limits``) are summed over the
    workers; the key is named by its fingerprint only."""
    from hl_notebook.server.ratelimit import fingerprint
    from tests.fakes import openai_server, serve

    provider_key = "sk-team-CANARY-0042"
    with serve(openai_server.create_app(provider_key)) as upstream:
        server = team_server(fresh_database(cluster), 3, "--provider-limits", "openai=60000rpm")
        try:
            wait_for_workers(server, 3)
            body = {"project": "stats", "messages": [{"role": "user", "content": "hi"}],
                    "provider_api_keys": {"openai": provider_key},
                    "model_config": {"model": "m", "provider": "openai", "other": {"base_url": upstream + "/v1"}}}

            def call(_: int) -> int:  # a connection each: the calls spread over the workers
                return requests.post(server.base_url + "/chat", json=body, headers=HEADERS, timeout=30).status_code

            with ThreadPoolExecutor(12) as pool:
                assert set(pool.map(call, range(30))) == {200}
            time.sleep(1.5)  # every worker has published (workers.PUBLISH_INTERVAL)
            stats = requests.get(server.base_url + "/server-stats", headers=HEADERS, timeout=10).json()
            assert (stats["workers"], stats["requests"]) == (3, 30)
            (key,) = stats["provider_limits"]
            assert (key["provider"], key["fingerprint"], key["requests"]) == ("openai", fingerprint(provider_key), 30)
            assert provider_key not in json.dumps(stats)
            requests.post(server.base_url + "/server-stats/reset", headers=HEADERS, timeout=10)
            time.sleep(1.5)
            stats = requests.get(server.base_url + "/server-stats", headers=HEADERS, timeout=10).json()
            assert (stats["requests"], stats["provider_limits"][0]["requests"]) == (0, 0)
        finally:
            server.stop()


def test_a_notebook_sweep_through_a_killed_worker_loses_nothing_after_retry(cluster, monkeypatch):
    """The user's view of a worker dying: hl_notebook.sweep against 4 workers while the busiest
    is killed; the calls it was answering are rows with an error, retry(df) finishes them, and the
    server holds exactly one log per call."""
    import pandas as pd

    import hl_notebook
    from hl_notebook.config import HLSettings

    url = fresh_database(cluster)
    server = team_server(url, 4, "--mock-latency-ms", "30")
    try:
        pids = wait_for_workers(server, 4)
        monkeypatch.setenv("HUMANLOOP_BASE_URL", server.base_url)
        monkeypatch.setenv("HUMANLOOP_API_KEY", KEY)
        HLSettings.instance().provider = "mock"
        killer = threading.Timer(1.0, lambda: os.kill(busiest_worker(server, pids), signal.SIGKILL))
        killer.start()
        frame = hl_notebook.sweep("user: n{{i}}", model="m", temperature=0, inputs=pd.DataFrame({"i": range(1500)}),
                                  concurrency=32, project="notebook")
        killer.join()
        assert frame["call"].tolist() == list(range(1500))  # every call is a row
        failed = frame[frame["error"].notna()]
        assert len(failed) > 0, "the kill broke no call: it came too late"
        assert set(failed["error_type"]) <= {"HLConnectionError"}, failed["error"].tolist()[:3]
        for _ in range(5):
            if frame["error"].isna().all():
                break
            frame = hl_notebook.retry(frame, concurrency=8)
        assert frame["error"].isna().all()
        assert frame["output"].tolist() == [f"m: n{i}" for i in range(1500)]
        stored = stored_log_ids(url, "notebook")
        assert len(stored) == len(set(stored)) == 1500
        assert sorted(frame["log_id"]) == sorted(stored)
    finally:
        server.stop()
