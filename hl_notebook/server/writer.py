"""Group commit: one thread writes the chat calls' logs, many calls per transaction, callers await.

Why: under load a thread per call waiting for the store's write lock cost more than the write
(a profile at 16 clients: the hop to a worker thread, lock contention and the wake-ups back to the
event loop; the inserts themselves take ~0.1 ms). Here the event loop hands a call's write to one
writer thread and awaits a future; the writer takes every write queued meanwhile into one
transaction, each call inside its own SAVEPOINT — so a call that fails leaves nothing of itself
and does not undo the others — and settles the batch's futures with one wake-up of the loop.
A caller's future resolves only after COMMIT: a stored call is durable before it is answered.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Callable

from .database import TransientConflict
from .store import Store

Write = Callable[[Any], Any]  # fn(tx) -> value, run inside the batch's transaction (a database.Tx)
MAX_BATCH = 64  # writes per transaction: bounds how long the store's write lock is held
POSTGRES_WRITERS = 8  # PostgreSQL: writer threads per worker (each call its own transaction, in parallel)
CONFLICT_RETRIES = 5  # PostgreSQL: times a call's transaction runs again after a deadlock abort
IDLE_SECONDS = 5.0  # the thread ends after this long without work (apps built in tests come and go)


class GroupWriter:
    """Runs ``fn(db)`` for each awaited ``write(fn)`` on one thread, batched into transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[tuple[Write, asyncio.Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards starting and ending the threads against new work
        self._running = 0  # writer threads now
        # SQLite has one write lock: one thread batching many calls per transaction. PostgreSQL
        # locks rows: several threads, one call per transaction each (see _commit).
        postgres = store.db.dialect != "sqlite"
        self._max_threads = POSTGRES_WRITERS if postgres else 1
        self._max_batch = 1 if postgres else MAX_BATCH

    async def write(self, fn: Write) -> Any:
        """``fn(db)`` committed: its value, or the exception it (or the transaction) raised."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queue.put((fn, future))
            if self._running < self._max_threads and (not self._running or self._queue.qsize() > 1):
                self._running += 1
                threading.Thread(target=self._run, name="hl_notebook-writer", daemon=True).start()
        return await future

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            settled = self._commit(batch)
            for loop, results in _by_loop(settled).items():
                try:
                    loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # that loop is closed: nobody awaits these any more
                    pass

    def _next_batch(self) -> list[tuple[Write, asyncio.Future[Any]]] | None:
        """The writes queued now (waiting for the first); None once idle (the thread then ends)."""
        try:
            batch = [self._queue.get(timeout=IDLE_SECONDS)]
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._running -= 1
                    return None
            batch = []
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit(self, batch: list[tuple[Write, asyncio.Future[Any]]]
                ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """One transaction for the batch, a savepoint per write; (future, value, error) per write.

        On PostgreSQL each write is its own transaction instead: workers write concurrently there,
        and two batches that create the same new rows (a project, a payload) in different orders
        wait for each other until PostgreSQL aborts one of them: a 500 for that call.
        One call per transaction takes its locks in the store's fixed order, so the calls wait
        in turn; a conflict that still happens runs the call's transaction again.
        """
        if self.store.db.dialect != "sqlite":
            return [self._commit_alone(fn, future) for fn, future in batch]
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            with self.store.write() as db:
                for fn, future in batch:
                    db.run("SAVEPOINT chat_call")
                    try:
                        value = fn(db)
                    except Exception as exc:  # this call's rows go, the batch's others stay
                        db.run("ROLLBACK TO SAVEPOINT chat_call")
                        db.run("RELEASE SAVEPOINT chat_call")
                        results.append((future, None, exc))
                    else:
                        db.run("RELEASE SAVEPOINT chat_call")
                        results.append((future, value, None))
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is stored
            return [(future, None, exc) for _, future in batch]
        return results


    def _commit_alone(self, fn: Write, future: asyncio.Future[Any]
                      ) -> tuple[asyncio.Future[Any], Any, BaseException | None]:
        for attempt in range(CONFLICT_RETRIES):
            try:
                with self.store.write() as db:
                    return future, fn(db), None
            except TransientConflict as exc:
                if attempt == CONFLICT_RETRIES - 1:
                    return future, None, exc
                time.sleep(0.005 * (attempt + 1))
            except Exception as exc:
                return future, None, exc
        raise AssertionError("unreachable")


def _by_loop(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
             ) -> dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]]:
    grouped: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for item in results:
        grouped.setdefault(item[0].get_loop(), []).append(item)
    return grouped


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """On the loop: resolve each future (one a cancelled request no longer awaits is skipped)."""
    for future, value, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
