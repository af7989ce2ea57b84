"""SQLite's WAL copied into the database file on a thread of its own, not inside a COMMIT.

Why: with SQLite's automatic checkpoint, the COMMIT that takes the WAL past 1,000 pages copies
them into the database file and syncs it before it returns. Chat calls commit on the event loop
(``writer.py``), so that copy stopped every request in flight for its duration, and before that
it held up every call of the group writer's batches behind it. Here the store's connections turn
the automatic checkpoint off and each COMMIT wakes this thread, which runs a PASSIVE checkpoint
(it never waits for readers or writers: a writer appends to the WAL while pages are copied) at
most every ``PAUSE`` seconds while commits come, on its own connection, and ends after
``IDLE_SECONDS`` without one. Durability is unchanged: a COMMIT is in the WAL either way.
Measured: bench/README.md, "Issue 15, fifth round".
"""
from __future__ import annotations

import sqlite3
import threading

PAUSE = 0.05  # seconds between checkpoints while commits come (SQLite's default: every ~1,000 pages)
IDLE_SECONDS = 5.0  # the thread ends after this long without a commit (apps built in tests come and go)


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on one database file after commits, on its own thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.checkpoints = 0  # run so far (for tests and diagnostics)
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards starting and ending the thread against new commits
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def committed(self) -> None:
        """A transaction was committed: checkpoint soon (starts the thread if it is not running)."""
        with self._lock:
            self._wake.set()
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name="hl_notebook-checkpoint", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread after a last checkpoint (the store is closing)."""
        self._stopped.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    def _run(self) -> None:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            while True:
                if not self._wake.wait(IDLE_SECONDS):
                    with self._lock:
                        if not self._wake.is_set():  # no commit came meanwhile: end (the next one restarts it)
                            self._thread = None
                            return
                self._wake.clear()
                self._checkpoint(db)
                if self._stopped.wait(PAUSE):
                    self._checkpoint(db)
                    with self._lock:
                        self._thread = None
                    return
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error:  # a busy or closing file: the next commit asks again
            pass
