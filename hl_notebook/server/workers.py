"""Several server worker processes on one PostgreSQL database (``--workers N``).

Why: a team server needs more than one process — for more than one core, and so that a worker that
dies (a crash, ``kill -9``) costs only the requests it was answering while the others go on and
uvicorn's supervisor starts a new one. Everything workers must agree on lives in the database:
the rate budgets (``ratelimit.py``), fault and experiment draws (``Store.next_count``), the calls
running under an ``Idempotency-Key`` (``SharedInFlight``) and the request counters that
``/v4/server-stats`` adds up (``StatsPublisher``). SQLite is refused: several processes writing one
file queue on its single write lock, which is what the one-process server already avoids.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import signal
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from fastapi import HTTPException

from .idempotency import HEADER, InFlight
from .settings import ServerSettings

SETTINGS_FILE_VARIABLE = "HL_NOTEBOOK_SERVER_SETTINGS_FILE"
PUBLISH_INTERVAL = 0.5  # seconds between a worker's stats snapshots in the database
STATS_MAX_AGE = 5.0  # a worker silent for longer is gone (killed): its snapshot no longer counts
CLAIM_POLL = 0.05  # seconds between looks at a call another worker runs


def refuse_reason(settings: ServerSettings) -> str | None:
    """Why ``settings.workers`` cannot be served (None: it can)."""
    from .database import is_postgres

    if settings.workers < 1:
        return "--workers must be at least 1"
    if settings.workers > 1 and not is_postgres(settings.db_path):
        return (f"--workers {settings.workers} needs a PostgreSQL database (--db postgresql://…): several "
                "processes on one SQLite file would queue on its single write lock")
    return None


def worker_name() -> str:
    """This process, as other workers (on this host) can check it is alive: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(owner: str, started_at: float, max_age: float) -> bool:
    """Whether the worker ``owner`` (``worker_name()``) no longer runs its claim: its process is gone
    (on this host), or the claim is older than any call may last."""
    host, _, pid = owner.rpartition(":")
    if time.time() - started_at > max_age:
        return True
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class SharedInFlight(InFlight):
    """``InFlight`` across workers: a key is claimed in this process first, then in the database
    (``Store.claim_call``), so two workers never run one call at once. A claim left by a killed
    worker is taken over as soon as its process is gone."""

    def __init__(self, store: Any, max_age: float) -> None:
        super().__init__()
        self.store, self.owner, self.max_age = store, worker_name(), max_age

    def _stale(self, owner: str, started_at: float) -> bool:
        return owner_gone(owner, started_at, self.max_age)

    def enter(self, key: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        super().enter(key, timeout)
        while not self.store.claim_call(key, self.owner, self._stale):
            if time.monotonic() > deadline:
                super().leave(key)
                raise HTTPException(409, f"a request with this {HEADER} is still in progress; retry it later")
            time.sleep(CLAIM_POLL)

    def try_enter(self, key: str) -> bool:
        if not super().try_enter(key):
            return False
        if self.store.claim_call(key, self.owner, self._stale):
            return True
        super().leave(key)
        return False

    def leave(self, key: str) -> None:
        try:
            self.store.release_call(key, self.owner)
        finally:
            super().leave(key)


class StatsPublisher:
    """Each worker writes its chat counters and its per-key limiter counters (``ratelimit.py``) to
    the database every ``PUBLISH_INTERVAL`` seconds; any worker answers ``/v4/server-stats`` with
    their sums. A reset is a shared counter every worker notices within one interval."""

    RESETS = "stats-resets"
    # per-key fields that are each worker's own and are not added up (the budget, the shared timeline)
    SHARED_KEY_FIELDS = frozenset({"provider", "fingerprint", "rpm", "tpm", "next_slot_in_s"})

    def __init__(self, store: Any, counters: Any, limiter: Any) -> None:
        self.store, self.counters, self.limiter, self.name = store, counters, limiter, worker_name()
        self._resets_seen = store.count(self.RESETS)

    def _snapshot(self) -> dict[str, Any]:
        return {"chat": self.counters.snapshot(), "provider_limits": self.limiter.snapshot()}

    def publish(self) -> None:
        resets = self.store.count(self.RESETS)
        if resets != self._resets_seen:
            self._resets_seen = resets
            self.counters.reset()
            self.limiter.reset()
        self.store.publish_worker_stats(self.name, self._snapshot())

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.publish)
            except Exception:  # a database hiccup: the next interval tries again
                pass
            await asyncio.sleep(PUBLISH_INTERVAL)

    def totals(self) -> dict[str, Any]:
        """The counters summed over the live workers (this one's taken live): the chat counters,
        ``workers``, and per provider key its budget and timeline with every worker's counts added."""
        own = self._snapshot()
        others = [found for name, found in self.store.worker_stats(time.time() - STATS_MAX_AGE).items()
                  if name != self.name and isinstance(found, dict) and "chat" in found]
        every = [own, *others]
        chat = {field: sum(snapshot["chat"].get(field, 0) for snapshot in every) for field in own["chat"]}
        keys: dict[tuple[str, str], dict[str, Any]] = {}
        for snapshot in every:  # own first: the budget and the next slot come from the live reading
            for entry in snapshot.get("provider_limits", []):
                found = keys.get((entry["provider"], entry["fingerprint"]))
                if found is None:
                    keys[(entry["provider"], entry["fingerprint"])] = dict(entry)
                    continue
                for field, value in entry.items():
                    if field not in self.SHARED_KEY_FIELDS and isinstance(value, (int, float)):
                        found[field] = found.get(field, 0) + value
        return {**chat, "workers": len(every), "provider_limits": list(keys.values())}

    def reset(self) -> None:
        self.store.next_count(self.RESETS)
        self._resets_seen = self.store.count(self.RESETS)
        self.counters.reset()
        self.limiter.reset()
        self.store.clear_worker_stats()  # old snapshots no longer count; each worker publishes again after its reset


# -- serving ---------------------------------------------------------------------------------------
def write_settings(settings: ServerSettings) -> Path:
    """The settings for the worker processes, in a file only this user can read (it holds the API
    key, which is kept out of the environment and of command lines)."""
    fd, name = tempfile.mkstemp(prefix="hl-notebook-server-", suffix=".json")
    os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        json.dump(dataclasses.asdict(settings), handle)
    return Path(name)


def app() -> Any:
    """The app of one worker process (uvicorn imports this factory in each worker it starts)."""
    from . import create_app

    values = json.loads(Path(os.environ[SETTINGS_FILE_VARIABLE]).read_text())
    built = create_app(ServerSettings(**values))
    _cut_upstreams_on_sigterm(built)
    gc.freeze()  # as __main__ does: full collections no longer walk the long-lived app and imports
    return built


def _cut_upstreams_on_sigterm(built: Any) -> None:
    """As the one-process server does (``__main__``): uvicorn lets running requests finish before it
    stops, so a call whose upstream hangs would hold SIGTERM as long; its connection is cut first.
    uvicorn has installed its own handler when it loads the app (in the worker's main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def on_sigterm(sig: int, frame: Any) -> None:
        previous(sig, frame)
        built.state.upstreams.cancel()

    signal.signal(signal.SIGTERM, on_sigterm)


def serve(settings: ServerSettings, sock: socket.socket, on_exit: Callable[[], None] | None = None) -> None:
    """Run ``settings.workers`` worker processes on ``sock`` under uvicorn's supervisor, which starts a
    new worker when one dies; returns when the supervisor is told to stop (SIGINT, SIGTERM)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    path = write_settings(settings)
    os.environ[SETTINGS_FILE_VARIABLE] = str(path)
    try:
        config = uvicorn.Config("hl_notebook.server.workers:app", factory=True, workers=settings.workers,
                                log_level="warning", access_log=False)
        Multiprocess(config, sockets=[sock]).run()
    finally:
        path.unlink(missing_ok=True)
        if on_exit is not None:
            on_exit()
