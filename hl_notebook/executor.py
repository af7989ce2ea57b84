"""Running many ChatSpecs: a bounded thread pool, results in declared order, nothing lost.

Why: comparisons are configs × inputs × samples; they must run concurrently (one HTTP session per
worker), survive failing calls (a failed call is a row), and on KeyboardInterrupt cancel what is
pending but keep what finished. Threads, not asyncio: ``asyncio.run`` fails inside a kernel.
"""
from __future__ import annotations

import itertools
import signal
import sys
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .call import CallResult, DeltaCallback, execute
from .connection import Connection
from .errors import HLError
from .secrets import provider_keys_from_env
from .spec import ChatSpec

if TYPE_CHECKING:
    from .cache import ResponseCache


@dataclass
class SweepOutcome:
    """Results in declared order (missing calls were cancelled) and whether the run was interrupted."""

    results: list[CallResult]
    total: int
    interrupted: bool = False
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[CallResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        """One line, e.g. ``118 ok, 2 failed (HLRateLimitError ×2); see the error column``."""
        ok = len(self.results) - len(self.failed)
        text = f"{ok} ok, {len(self.failed)} failed"
        if self.failed:
            counts = Counter(type(r.error).__name__ for r in self.failed)
            text += " (" + ", ".join(f"{name} ×{n}" for name, n in counts.most_common()) + "); see the error column"
        cancelled = self.total - len(self.results)
        if cancelled:
            text += f"; {cancelled} cancelled"
        return text


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a widget progress bar can render)."""
    shell = sys.modules.get("IPython") and __import__("IPython").get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """A tqdm bar with done/failed counts, or nothing."""

    def __init__(self, total: int, show: bool) -> None:
        self.bar = None
        self.failed = 0
        if show:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc="hlchat", unit="call", leave=True)

    def update(self, result: CallResult) -> None:
        self.failed += not result.ok
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_specs(specs: Sequence[ChatSpec], connection: Connection, *, concurrency: int = 8,
              progress: bool | None = None, on_delta: DeltaCallback | None = None,
              stop: threading.Event | None = None, on_result: Callable[[CallResult], None] | None = None,
              tick: Callable[[], None] | None = None, cache: "ResponseCache | None" = None) -> SweepOutcome:
    """Run ``specs`` (call number = position) and return their results in declared order.

    KeyboardInterrupt (or ``stop`` being set) cancels pending calls; finished results are kept and
    ``interrupted`` is set — the caller assigns them and then re-raises. ``tick`` is called on
    the calling thread while waiting (the stream view draws there).
    """
    stop = stop or threading.Event()
    keys = provider_keys_from_env()
    client = connection.client
    show = in_notebook() if progress is None else progress
    bar = Progress(len(specs), show and len(specs) > 1)
    done: dict[int, CallResult] = {}
    outcome = SweepOutcome([], len(specs))

    def one(index: int) -> CallResult:
        cached = cache.get(specs[index]) if cache else None
        if cached is not None:
            return CallResult(index, specs[index], cached, latency_s=0.0, cached=True)
        result = execute(client, specs[index], index, provider_api_keys=keys, on_delta=on_delta,
                         cancelled=stop.is_set)
        if cache and result.ok and result.response:
            cache.put(specs[index], result.response)
        return result

    def finish(result: CallResult) -> None:
        done[result.call] = result
        bar.update(result)
        if on_result:
            on_result(result)

    try:
        if len(specs) == 1 or concurrency == 1:
            for index in range(len(specs)):
                if stop.is_set():
                    break
                finish(one(index))
        else:
            with _interrupt_sets(stop):
                _run_pool(specs, one, finish, min(concurrency, len(specs)), stop, tick or (lambda: None))
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        stop.set()
        bar.close()
    outcome.interrupted = outcome.interrupted or len(done) < len(specs)
    outcome.results = [done[i] for i in sorted(done)]
    outcome.configs = _config_params(connection, outcome.results)
    return outcome


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


def _run_pool(specs: Sequence[ChatSpec], one: Callable[[int], CallResult], finish: Callable[[CallResult], None],
              workers: int, stop: threading.Event, tick: Callable[[], None]) -> None:
    """At most ``workers`` calls are submitted at a time: cancelling is then only a matter of not
    submitting more, and waiting never walks a list of every pending call."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hlchat")
    upcoming = iter(range(len(specs)))
    running: set[Future] = set()
    try:
        for index in itertools.islice(upcoming, workers):
            running.add(pool.submit(one, index))
        while running and not stop.is_set():
            # short waits keep the main thread responsive to KeyboardInterrupt
            finished, running = wait(running, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in finished:
                finish(future.result())
                index = next(upcoming, None)
                if index is not None and not stop.is_set():
                    running.add(pool.submit(one, index))
            tick()
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for future in running:  # finished between the last wait and the stop: keep them
            if future.done() and not future.cancelled():
                finish(future.result())


def _config_params(connection: Connection, results: list[CallResult]) -> dict[str, dict[str, Any]]:
    """Parameters of the configs the server chose (deployed, experiment, by id), for the frame."""
    ids = {entry.get("model_config_id") for r in results if r.spec.endpoint != "chat" and r.response
           for entry in r.response.get("data") or []} - {None}
    params: dict[str, dict[str, Any]] = {}
    for config_id in sorted(ids):
        try:
            params[config_id] = connection.config(config_id)
        except HLError:
            continue
    return params
