"""SQLite's WAL is copied into the database file by the store's checkpoint thread, never by a COMMIT."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hl_notebook.server import checkpoint
from hl_notebook.server.database import SQLiteDatabase

PAGE_OF_TEXT = "x" * 4000  # about one 4 KB page per row


def _write_rows(db: SQLiteDatabase, rows: int, start: int = 0) -> None:
    """One transaction per row, every other one through ``writing_now`` (the loop's connection)."""
    for i in range(start, start + rows):
        with (db.writing_now() if i % 2 else db.writing()) as tx:
            assert tx is not None
            tx.run("INSERT INTO t VALUES (?, ?)", (i, PAGE_OF_TEXT))


def _database(tmp_path: Path) -> SQLiteDatabase:
    db = SQLiteDatabase(tmp_path / "wal.sqlite")
    with db.writing() as tx:
        tx.run("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    return db


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _frames_left(path: Path) -> int:
    """WAL frames not yet in the database file (a PASSIVE checkpoint's report, from another connection)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        _, log_frames, checkpointed = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return log_frames - checkpointed
    finally:
        other.close()


def test_the_store_connections_never_checkpoint_and_the_thread_does(tmp_path: Path) -> None:
    db = _database(tmp_path)
    try:
        with db.reading() as tx:
            assert tx.value("PRAGMA wal_autocheckpoint") == 0
        assert db._nowait_connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        _write_rows(db, 50)
        assert _wait_for(lambda: db._checkpointer.checkpoints > 0)
        with db.reading() as tx:
            assert tx.value("SELECT COUNT(*) FROM t") == 50
        assert _wait_for(lambda: _frames_left(tmp_path / "wal.sqlite") == 0)
    finally:
        db.close()


def test_without_the_thread_commits_leave_the_wal_growing(tmp_path: Path) -> None:
    """What the thread takes over: 1,200 one-page commits pass SQLite's automatic 1,000-page
    checkpoint, and none of them copies anything (the WAL file holds them all)."""
    db = _database(tmp_path)
    db._checkpointer.stop()  # nothing copies the WAL now
    try:
        _write_rows(db, 1200)
        wal = tmp_path / "wal.sqlite-wal"
        assert wal.stat().st_size > 1200 * 4096
        other = sqlite3.connect(tmp_path / "wal.sqlite")
        assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1200  # committed all the same
        other.close()
    finally:
        db.close()


def test_the_thread_ends_when_idle_and_the_next_commit_starts_it_again(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "IDLE_SECONDS", 0.2)
    db = _database(tmp_path)
    try:
        _write_rows(db, 5)
        assert _wait_for(lambda: db._checkpointer._thread is None)
        before = db._checkpointer.checkpoints
        _write_rows(db, 5, start=5)
        assert _wait_for(lambda: db._checkpointer.checkpoints > before)
        assert _wait_for(lambda: _frames_left(tmp_path / "wal.sqlite") == 0)
    finally:
        db.close()
    assert db._checkpointer._thread is None


def test_closing_the_store_ends_the_thread_after_a_last_checkpoint(tmp_path: Path) -> None:
    db = _database(tmp_path)
    _write_rows(db, 20)
    thread = db._checkpointer._thread
    assert thread is not None and thread.is_alive()
    db.close()
    assert not thread.is_alive() and db._checkpointer._thread is None
    assert _frames_left(tmp_path / "wal.sqlite") == 0


def test_an_in_memory_database_has_no_thread() -> None:
    db = SQLiteDatabase(":memory:")
    assert db._checkpointer is None
    with db.writing() as tx:
        tx.run("CREATE TABLE t (id INTEGER)")
    db.close()
