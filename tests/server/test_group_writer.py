"""The group writer commits many chat calls' writes per transaction, each call all-or-nothing."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from hl_notebook.server.store import Store
from hl_notebook.server.writer import GroupWriter


def _names(store: Store) -> set[str]:
    return {project["name"] for project in store.list_projects()}


def test_a_failing_call_leaves_nothing_and_the_others_in_its_batch_are_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store, inline=False)  # the writer thread's batches
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
    writer = GroupWriter(store, inline=False)

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
    writer = GroupWriter(store, inline=False)
    answers: dict[str, object] = {}

    def in_loop(name: str) -> None:
        answers[name] = asyncio.run(writer.write(lambda db: store.ensure_project(db, name)))

    threads = [threading.Thread(target=in_loop, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert set(answers) == {"x", "y"} and _names(store) >= {"x", "y"}


def _thread_name_of(store: Store, name: str):
    def write(db):
        store.ensure_project(db, name)
        return threading.current_thread().name
    return write


def test_a_write_whose_lock_is_free_is_committed_on_the_loop_itself(tmp_path: Path) -> None:
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store)

    async def run() -> str:
        ran_on = await writer.write(_thread_name_of(store, "inline"))
        assert "inline" in _names(store)  # committed when write() returns
        return ran_on

    assert asyncio.run(run()) == threading.current_thread().name


def test_a_write_while_this_process_writes_elsewhere_goes_to_the_writer_thread(tmp_path: Path) -> None:
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store)
    holding, release = threading.Event(), threading.Event()

    def other_writer():  # a request on a thread pool holding the store's write lock
        with store.write() as db:
            store.ensure_project(db, "other")
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert holding.wait(10)

    async def run() -> tuple[str, float]:
        started = time.monotonic()
        write = asyncio.ensure_future(writer.write(_thread_name_of(store, "queued")))
        await asyncio.sleep(0.2)
        stalled = time.monotonic() - started  # ~0.2 s unless the loop waited for the lock
        assert not write.done()
        release.set()
        return await write, stalled

    ran_on, stalled = asyncio.run(run())
    thread.join(10)
    assert ran_on == "hl_notebook-writer" and stalled < 1.0
    assert _names(store) >= {"other", "queued"}


def test_a_write_while_another_process_holds_the_database_never_stops_the_loop(tmp_path: Path) -> None:
    """SQLite's lock held through another connection (another server process on the file): the
    loop's attempt fails at once (no busy wait on the loop) and the writer thread waits instead."""
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store)
    other = sqlite3.connect(tmp_path / "writer.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def run() -> tuple[str, float]:
        started = time.monotonic()
        write = asyncio.ensure_future(writer.write(_thread_name_of(store, "after")))
        await asyncio.sleep(0.2)
        stalled = time.monotonic() - started  # ~0.2 s unless the loop was blocked
        assert not write.done()
        other.execute("COMMIT")
        return await write, stalled

    try:
        ran_on, stalled = asyncio.run(run())
    finally:
        other.close()
    assert ran_on == "hl_notebook-writer" and stalled < 1.0
    assert "after" in _names(store)


def test_a_failing_write_on_the_loop_leaves_nothing_and_raises_its_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "writer.sqlite")
    writer = GroupWriter(store)

    def half_then_fail(db):
        store.ensure_project(db, "half")
        raise RuntimeError("provider exploded after the first insert")

    async def run() -> None:
        with pytest.raises(RuntimeError, match="exploded"):
            await writer.write(half_then_fail)
        assert await writer.write(_thread_name_of(store, "next")) == threading.current_thread().name

    asyncio.run(run())
    assert _names(store) == {"next"}
