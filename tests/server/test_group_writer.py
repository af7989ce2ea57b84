"""The group writer commits many chat calls' writes per transaction, each call all-or-nothing."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from hl_notebook.server.store import Store
from hl_notebook.server.writer import GroupWriter


def _names(store: Store) -> set[str]:
    return {project["name"] for project in store.list_projects()}


def test_a_failing_call_leaves_nothing_and_the_others_in_its_batch_are_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store)
    release = threading.Event()

    def blocker(db):  # holds the writer until the next three writes are queued: they form one batch
        store.ensure_project(db, "first")
        release.wait(10)
        return "first"

    def ok(name: str):
        def write(db):
            store.ensure_project(db, name)
            return name
        return write

    def half_then_fail(db):
        store.ensure_project(db, "half")
        raise RuntimeError("provider exploded after the first insert")

    async def run() -> list[object]:
        first = asyncio.ensure_future(writer.write(blocker))
        await asyncio.sleep(0)  # the writer takes `first` alone
        rest = [asyncio.ensure_future(writer.write(fn)) for fn in (ok("a"), half_then_fail, ok("b"))]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(run())

    assert results[0] == "first" and results[1] == "a" and results[3] == "b"
    assert isinstance(results[2], RuntimeError)
    assert _names(store) == {"first", "a", "b"}  # nothing of the failed call, all of the others


def test_a_failed_transaction_fails_every_write_of_its_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store)

    class Broken(Exception):
        pass

    def failing_write():
        raise Broken("the database is gone")

    monkeypatch.setattr(store, "write", failing_write)

    async def run() -> list[object]:
        return await asyncio.gather(*(writer.write(lambda db: None) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(result, Broken) for result in asyncio.run(run()))


def test_writes_from_two_event_loops_are_answered_on_their_own_loops(tmp_path: Path) -> None:
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store)
    answers: dict[str, object] = {}

    def in_loop(name: str) -> None:
        answers[name] = asyncio.run(writer.write(lambda db: store.ensure_project(db, name)))

    threads = [threading.Thread(target=in_loop, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert set(answers) == {"x", "y"} and _names(store) >= {"x", "y"}
