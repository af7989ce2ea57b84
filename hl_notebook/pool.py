"""Stage 2, pool: run many ChatSpecs on a bounded thread pool; results in declared order, nothing lost.

Why: comparisons are configs × inputs × samples; they must run concurrently (one HTTP session per
worker), survive failing calls (a failed call is a row), and on KeyboardInterrupt cancel what is
pending but keep what finished. Threads, not asyncio: ``asyncio.run`` fails inside a kernel (pitfall 6).
What a finished run means for the user — raise, or report one line — is decided once, by ``Run``,
for the magic, the panel and the Python API alike.
"""
from __future__ import annotations

import queue
import signal
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .call import CallResult, DeltaCallback, call_keys, execute
from .config import HLSettings
from .connection import Connection, connect
from .errors import HLCancelled, HLError, HLInterrupted, HLRateLimitError, HLUsageError
from .gcpause import old_objects_frozen
from .spec import ChatSpec

if TYPE_CHECKING:
    import pandas as pd

    from .cache import ResponseCache
    from .frame import SpecColumns


@dataclass
class Run:
    """A finished (or interrupted) run: results in declared order, and the frame built from them.

    ``results`` holds one result per spec, in order: calls that never finished (Ctrl-C, Stop) are
    results with an ``HLCancelled`` error, so they are rows and ``retry(df)`` can run them later.
    """

    results: list[CallResult]
    total: int
    interrupted: bool = False
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    concurrency_levels: list[int] = field(default_factory=list)  # the adaptive limit's changes
    prepared: "SpecColumns | None" = None  # the frame's spec columns, built while the calls ran
    _frame: "pd.DataFrame | None" = None

    @property
    def frame(self) -> "pd.DataFrame":
        if self._frame is None:
            from .frame import to_frame

            self._frame = to_frame(self.results, self.configs, self.prepared)
        return self._frame

    @property
    def failed(self) -> list[CallResult]:
        return [r for r in self.results if not r.ok and not isinstance(r.error, HLCancelled)]

    @property
    def cancelled(self) -> int:
        return sum(isinstance(r.error, HLCancelled) for r in self.results)

    @property
    def fatal(self) -> HLError | None:
        """The error of a single call that produced nothing at all: the front end raises it."""
        if self.total == 1 and len(self.results) == 1 and self.results[0].error is not None:
            if not (self.results[0].response or {}).get("data"):
                return self.results[0].error
        return None

    def summary(self) -> str:
        """One line, e.g. ``118 ok, 2 failed (HLRateLimitError ×2); see the error column``."""
        failed = self.failed
        text = f"{len(self.results) - len(failed) - self.cancelled} ok, {len(failed)} failed"
        if failed:
            counts = Counter(type(r.error).__name__ for r in failed)
            text += " (" + ", ".join(f"{name} ×{n}" for name, n in counts.most_common()) + "); see the error column"
        if self.cancelled:
            text += f"; {self.cancelled} cancelled"
        return text

    def status(self) -> tuple[str, bool]:
        """The line a front end shows after the run, and whether it reports a problem."""
        if self.fatal is not None:
            return f"{type(self.fatal).__name__}: {self.fatal}", True
        failed = self.failed
        if self.total == 1 and failed:
            return f"{type(failed[0].error).__name__}: {failed[0].error}", True
        return self.summary(), bool(failed or self.cancelled)

    def result(self, *, raise_fatal: bool = True, report: bool = True, kept_in: str | None = None
               ) -> "pd.DataFrame":
        """The frame, applying the one rule of every front end.

        Interrupted with calls cancelled -> ``HLInterrupted`` (a KeyboardInterrupt, one line naming
        where the rows are: ``kept_in``, else the history);
        a single call with nothing received -> its error (with ``raise_fatal``); otherwise the
        frame, with one line on stderr (``report``) when some calls failed.
        """
        if self.interrupted and self.cancelled:  # the run is in the history whatever ``kept_in`` is
            raise HLInterrupted(f"{self.summary()}; rows so far are in {kept_in or 'hl_notebook.history()'}")
        if raise_fatal and self.fatal is not None:
            raise self.fatal
        text, problem = self.status()
        if report and problem:
            print(text, file=sys.stderr)
        return self.frame


class AdaptiveLimit:
    """How many calls a sweep keeps in flight: start high, halve when the server pushes back (a 429
    or 503, seen as a new ``Throttle`` hold or a rate-limit row), grow ×1.5 after 5 successes in a
    row, never above ``maximum`` (promptfoo's rule). ``levels`` records every change."""

    START = 32
    GROW_AFTER = 5

    def __init__(self, maximum: int, pushed_back: Callable[[], int]) -> None:
        self.maximum = maximum
        self.current = min(self.START, maximum)
        self.levels = [self.current]
        self._pushed_back = pushed_back
        self._seen = pushed_back()
        self._streak = 0

    def observe(self, result: CallResult) -> None:
        holds = self._pushed_back()
        if holds > self._seen or isinstance(result.error, HLRateLimitError):
            self._seen = holds
            self._streak = 0
            self._set(max(1, self.current // 2))
        elif result.ok:
            self._streak += 1
            if self._streak >= self.GROW_AFTER:
                self._streak = 0
                self._set(min(self.maximum, -(-self.current * 3 // 2)))

    def _set(self, level: int) -> None:
        if level != self.current:
            self.current = level
            self.levels.append(level)


IDLE_PAUSE = 0.005  # s: the calling thread's wait between pieces of idle work (the workers run meanwhile)
CACHEABLE = ("chat", "model-config")  # endpoints whose answer the request alone determines


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a widget progress bar can render)."""
    shell = sys.modules.get("IPython") and __import__("IPython").get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


def show_progress(requested: bool | None) -> bool:
    """An explicit request wins; else ``HLSettings.progress`` (True/False), else notebooks only."""
    if requested is not None:
        return requested
    setting = HLSettings.instance().progress
    return in_notebook() if setting is None else setting


class Progress:
    """A tqdm bar with done/failed counts, or nothing.

    ``count`` runs where a call finishes (a worker, under the pool's lock); ``draw`` only on the
    calling thread (a notebook's widget bar belongs to it), for everything counted since it last
    drew: at most every 0.1 s in a sweep, which is as often as tqdm refreshes anyway.
    """

    def __init__(self, total: int, show: bool) -> None:
        self.bar = None
        self.done = self.failed = self._drawn = 0
        if show:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc="hlchat", unit="call", leave=True)

    def count(self, result: CallResult) -> None:
        self.done += 1
        self.failed += not result.ok

    def draw(self, in_flight: int | None = None) -> None:
        done = self.done
        if self.bar is None or done == self._drawn:
            return
        postfix = {"failed": self.failed} if in_flight is None else {"failed": self.failed, "in_flight": in_flight}
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self._drawn)
        self._drawn = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_specs(specs: Sequence[ChatSpec], *, connection: Connection | None = None,
              concurrency: int | None = None, progress: bool | None = None,
              on_delta: DeltaCallback | None = None, stop: threading.Event | None = None,
              on_result: Callable[[CallResult], None] | None = None, tick: Callable[[], None] | None = None,
              cache: bool | None = None) -> Run:
    """Run ``specs`` (call number = position) and return a Run with results in declared order.

    KeyboardInterrupt (or ``stop`` being set) cancels pending calls; finished results are kept and
    ``interrupted`` is set. ``tick`` is called on the calling thread while waiting (the stream view
    draws there). ``cache`` (default ``HLSettings.cache``) answers identical requests locally.
    """
    settings = HLSettings.instance()
    concurrency = settings.concurrency if concurrency is None else concurrency
    if concurrency < 1:
        raise HLUsageError("--concurrency must be at least 1")
    if not specs:  # no calls (inputs without rows): no server needed, and no worker would end the wait
        return Run([], 0)
    connection = connection or connect()
    # keys first: a call cut off in flight and its cancelled row (retried later) are one call to the server
    keys = iter(call_keys(sum(not spec.call_key for spec in specs)))
    specs = [spec if spec.call_key else spec.with_key(next(keys)) for spec in specs]
    response_cache = _cache(cache)
    stop = stop or threading.Event()
    bar = Progress(len(specs), show_progress(progress) and len(specs) > 1)
    done: dict[int, CallResult] = {}
    run = Run([], len(specs))
    limit = AdaptiveLimit(concurrency, lambda: connection.client.throttle.holds)

    def one(index: int) -> CallResult:
        # experiments and deployments choose the config per call on the server: never from the cache
        cacheable = response_cache is not None and specs[index].endpoint in CACHEABLE
        cached = response_cache.get(specs[index]) if cacheable else None
        if cached is not None:
            return CallResult(index, specs[index], cached, latency_s=0.0, cached=True)
        result = execute(connection, specs[index], index, on_delta=on_delta, cancelled=stop.is_set)
        if cacheable and result.ok and result.response:
            response_cache.put(specs[index], result.response)
        return result

    def keep(result: CallResult) -> None:
        """A finished call, on the thread that ran it (one at a time: the pool holds its lock)."""
        done[result.call] = result
        limit.observe(result)
        bar.count(result)

    def draw() -> None:
        """On the calling thread, while it waits and after each result it hands to ``on_result``."""
        bar.draw(limit.current if concurrency > 1 else None)
        if tick:
            tick()

    with old_objects_frozen():  # a full collection now would stop every worker (gcpause.py)
        try:
            if len(specs) == 1 or concurrency == 1:
                for index in range(len(specs)):
                    if stop.is_set():
                        break
                    result = one(index)
                    keep(result)
                    bar.draw()
                    if on_result:
                        on_result(result)
            else:
                from .frame import SpecColumns

                run.prepared = SpecColumns(specs)
                with _interrupt_sets(stop):
                    _run_pool(len(specs), one, keep, limit, stop, draw, on_result, run.prepared.build_some)
        except KeyboardInterrupt:
            run.interrupted = True
        finally:
            stop.set()
            bar.close()
        run.concurrency_levels = limit.levels
        run.interrupted = run.interrupted or len(done) < len(specs)
        never = HLCancelled("cancelled before it finished (interrupted); retry(df) runs it")
        run.results = [done.get(i) or CallResult(i, spec, error=never) for i, spec in enumerate(specs)]
        run.configs = _config_params(connection, run.results)
        if run.results:
            from . import archive

            archive.record_later(run.frame)
    return run


def _cache(requested: bool | None) -> "ResponseCache | None":
    settings = HLSettings.instance()
    if requested or (requested is None and settings.cache):
        from .cache import ResponseCache

        return ResponseCache(settings.cache_path)
    return None


@contextmanager
def _interrupt_sets(stop: threading.Event) -> Iterator[None]:
    """While the pool runs, SIGINT (a kernel interrupt) sets ``stop`` instead of raising.

    A KeyboardInterrupt raised inside ``concurrent.futures.wait`` can leave a future's lock held
    and deadlock the workers; setting ``stop`` lets the loop end cleanly. KeyboardInterrupt is
    raised afterwards, so callers see the interrupt as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt


def _run_pool(total: int, one: Callable[[int], CallResult], keep: Callable[[CallResult], None],
              limit: AdaptiveLimit, stop: threading.Event, draw: Callable[[], None],
              deliver: Callable[[CallResult], None] | None = None,
              idle: Callable[[], bool] | None = None) -> None:
    """Run calls ``0..total-1`` on ``min(limit.maximum, total)`` worker threads, each taking the next
    call when it has finished its last and passing the result to ``keep`` under one lock.

    Worker ``k`` takes calls only while ``k < limit.current``, so at most ``limit.current`` calls are
    in flight as the limit changes (``keep`` observes it), and cancelling is a matter of taking no
    more: once ``stop`` is set no result is kept. The calling thread only waits, calling ``draw``
    at least every 0.1 s (it stays responsive to KeyboardInterrupt), and hands each result to
    ``deliver`` when one is given (the panel's ``on_result``, which must run on its thread). While
    ``idle`` says there is more to do, it is called every ``IDLE_PAUSE`` s of waiting instead (a
    short piece of work, such as the frame's spec columns, done while the calls are out).

    Why: a ThreadPoolExecutor fed one call per completion cost a Future, a work item and a
    callback per call, and woke the calling thread to submit each next one; handing every result
    to the calling thread still cost a wake-up and a GIL hand-over per call. Both were a fifth to a
    third of the GIL time of a 1,000-call sweep at 32 threads (py-spy). The workers wait for one
    another before the first call: ``Thread.start`` waits until the new thread runs, which took
    ~1.1 ms a thread while the earlier ones were already sending (45-50 ms until the 32nd started),
    against ~0.1 ms while they wait. A call's exception (a bug: ``execute`` makes failures
    results) is re-raised on the calling thread, as ``Future.result`` did.
    """
    upcoming = iter(range(total))
    lock = threading.Condition(threading.Lock())  # guards upcoming and keep; workers above the limit wait on it
    finished = threading.Event()  # every call kept, or a call raised
    results: queue.SimpleQueue[CallResult] = queue.SimpleQueue()  # for ``deliver`` only
    failures: list[BaseException] = []
    kept = 0
    go = threading.Event()  # the workers start together, once all are running

    def work(slot: int) -> None:
        nonlocal kept
        go.wait()
        while True:
            with lock:
                while slot >= limit.current and not stop.is_set():
                    lock.wait()
                index = None if stop.is_set() else next(upcoming, None)
            if index is None:
                return
            try:
                result = one(index)
                with lock:
                    if stop.is_set():  # the run is over: the calling thread has what it keeps
                        return
                    level = limit.current
                    keep(result)
                    kept += 1
                    if limit.current > level:
                        lock.notify_all()
                    if kept == total:
                        finished.set()
                    if deliver is not None:  # under the lock: the stop below sees every kept result
                        results.put(result)
            except BaseException as exc:  # noqa: BLE001 - raised by the calling thread
                failures.append(exc)
                finished.set()
                return

    delivered = 0
    busy = idle is not None  # idle work remains
    try:
        for slot in range(min(limit.maximum, total)):
            threading.Thread(target=work, args=(slot,), name=f"hlchat_{slot}").start()
        go.set()
        while not stop.is_set() and not failures:
            wait = IDLE_PAUSE if busy else 0.1
            if deliver is None:
                if finished.wait(wait):
                    break
            elif delivered == total:
                break
            else:
                try:
                    deliver(results.get(timeout=wait))
                    delivered += 1
                except queue.Empty:
                    pass
            draw()
            if busy:
                try:
                    busy = idle()  # type: ignore[misc]
                except Exception:  # noqa: BLE001 - optional work: its bug must not stop the calls (done again later)
                    busy = False
    finally:
        go.set()  # (a thread that failed to start leaves the others waiting otherwise)
        with lock:
            stop.set()
            lock.notify_all()
        while deliver is not None:  # kept before the stop: hand them over too
            try:
                deliver(results.get_nowait())
            except queue.Empty:
                break
        draw()
    if failures:
        raise failures[0]


def _config_params(connection: Connection, results: list[CallResult]) -> dict[str, dict[str, Any]]:
    """Parameters of the configs the server chose (deployed, experiment, by id), for the frame."""
    ids = {entry.get("model_config_id") for r in results if r.spec.endpoint != "chat" and r.response
           for entry in r.response.get("data") or [] if isinstance(entry, dict)} - {None}
    params: dict[str, dict[str, Any]] = {}
    for config_id in sorted(ids):
        try:
            params[config_id] = connection.config(config_id)
        except HLError:
            continue
    return params
