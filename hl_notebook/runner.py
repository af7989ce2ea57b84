"""Run ChatSpecs for a front end: connect, run, build the frame, record history, report failures.

Why: the magic, the Python API and the panel differ only in how they show things; what counts as
"nothing usable" (raise) versus "some rows failed" (one summary line) is decided here once.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .call import DeltaCallback
from .config import HLSettings
from .connection import Connection, connect
from .frame import to_frame
from .spec import ChatSpec
from .executor import SweepOutcome, run_specs

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Run:
    """A finished run: its frame, the sweep outcome, and the error to raise if nothing usable came back."""

    frame: "pd.DataFrame"
    outcome: SweepOutcome

    @property
    def fatal(self) -> Exception | None:
        """The error of a single call that produced no output at all (else None)."""
        results = self.outcome.results
        if self.outcome.total == 1 and len(results) == 1 and results[0].error is not None:
            response = results[0].response or {}
            if not response.get("data"):
                return results[0].error
        return None

    def report(self) -> None:
        """One line to stderr when some (not all-or-nothing single) calls failed or were cancelled."""
        outcome = self.outcome
        if self.fatal is None and (outcome.failed or outcome.interrupted):
            if outcome.total == 1 and outcome.failed:
                print(f"{type(outcome.failed[0].error).__name__}: {outcome.failed[0].error}", file=sys.stderr)
            else:
                print(outcome.summary(), file=sys.stderr)


def execute_specs(specs: Sequence[ChatSpec], *, connection: Connection | None = None,
                  concurrency: int | None = None, progress: bool | None = None,
                  on_delta: DeltaCallback | None = None, stop: threading.Event | None = None,
                  tick: Any = None, cache: bool | None = None, on_result: Any = None) -> Run:
    """Run specs and build the frame; records the frame in the history.

    ``cache`` (default ``HLSettings.cache``) answers identical requests from the response cache.
    """
    from . import archive

    settings = HLSettings.instance()
    if concurrency is not None and concurrency < 1:
        from .errors import HLUsageError
        raise HLUsageError("--concurrency must be at least 1")
    connection = connection or connect()
    response_cache = None
    if cache or (cache is None and settings.cache):
        from .cache import ResponseCache
        response_cache = ResponseCache(settings.cache_path)
    outcome = run_specs(specs, connection, concurrency=concurrency or settings.concurrency, progress=progress,
                        on_delta=on_delta, stop=stop, tick=tick, cache=response_cache, on_result=on_result)
    frame = to_frame(outcome.results, outcome.configs)
    if outcome.results:
        archive.record(frame)
    return Run(frame, outcome)


def finish(run: Run, shell: Any = None, out: str | None = None) -> "pd.DataFrame":
    """Assign ``out``, then raise (nothing usable / interrupted) or report and return the frame."""
    if out and shell is not None:
        shell.user_ns[out] = run.frame
    if run.outcome.interrupted and len(run.outcome.results) < run.outcome.total:
        print(run.outcome.summary() + (f"; rows so far are in {out}" if out else ""), file=sys.stderr)
        raise KeyboardInterrupt
    fatal = run.fatal
    if fatal is not None:
        raise fatal
    run.report()
    return run.frame


def magic_specs(args: Any, cell: str, namespace: Any, default_provider: str | None) -> list[ChatSpec]:
    """Parsed ``%%hlchat`` options + cell body -> ChatSpecs. No network: every mistake found here
    is reported with nothing sent."""
    from .command import AXIS_NAMES, axis_values, make_specs
    from .parse import parse_cell

    messages = parse_cell(cell)
    return make_specs(
        messages, endpoint=args.endpoint,
        axes={n: axis_values(n, getattr(args, n), namespace) for n in AXIS_NAMES},
        configs=_variable(namespace, args.configs, "--configs"), inputs=_variable(namespace, args.inputs, "--inputs"),
        deployed=args.deployed, stop=(args.stop[0] if len(args.stop) == 1 else list(args.stop)) if args.stop else None,
        project=args.project or HLSettings.instance().project or None, num_samples=args.num_samples,
        stream=args.stream, save=not args.no_save, metadata=_variable(namespace, args.metadata, "--metadata"),
        session_id=args.session_id, default_provider=default_provider, namespace=namespace)


def run_magic(shell: Any, args: Any, cell: str) -> "pd.DataFrame":
    """``%%hlchat``: options + cell -> specs -> run -> frame (assigned to ``--out``)."""
    from .display import StreamView

    connection = connect(args.base_url)
    specs = magic_specs(args, cell, shell.user_ns, connection.default_provider)
    view = StreamView() if args.stream else None
    try:
        run = execute_specs(specs, connection=connection, concurrency=args.concurrency,
                            on_delta=view.on_delta if view else None, tick=view.flush if view else None,
                            cache=args.cache or None)
    finally:
        if view:
            view.close()
    return finish(run, shell, args.out)


def _variable(namespace: Any, name: str | None, option: str) -> Any:
    from .errors import HLUsageError

    if name is None:
        return None
    if name not in namespace:
        raise HLUsageError(f"{option} {name!r} is not defined in the notebook")
    return namespace[name]
