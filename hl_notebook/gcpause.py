"""While a run's calls are out, full garbage collections skip the objects that existed before it.

Why: a full collection walks every object the collector tracks and holds the GIL while it does, so
every worker thread stops. After ``import pandas`` alone that walk takes 15-40 ms here (about 60,000
objects: modules, functions, types), in a kernel with more imported more; it fell on about one
1,000-call sweep in three, just as the first calls went out, and so delayed all of them (bench/README.md,
"Issue 15, fifth round"). ``gc.freeze`` moves the objects tracked now out of the collector's
generations and ``gc.unfreeze`` puts them back into the oldest when the last run ends: a collection
during a run walks only what the run made, and garbage from before is collected at the first full
collection after it. Nothing else of the collector changes.

A process that froze objects itself (``gc.get_freeze_count() > 0`` when a run starts, say a server
before forking) is left alone: unfreezing would undo its choice.
"""
from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_runs = 0  # runs in progress (the panel and a cell can run at once)
_frozen_by_us = False


@contextmanager
def old_objects_frozen() -> Iterator[None]:
    """Freeze the tracked objects for the duration of the block; the last block to end unfreezes."""
    global _runs, _frozen_by_us
    with _lock:
        if _runs == 0 and gc.get_freeze_count() == 0:
            gc.freeze()
            _frozen_by_us = True
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _frozen_by_us:
                _frozen_by_us = False
                gc.unfreeze()


def _after_fork_in_child() -> None:
    """A child forked during a run has none of its threads: nothing of ours stays frozen there."""
    global _lock, _runs, _frozen_by_us
    _lock = threading.Lock()
    if _frozen_by_us:
        gc.unfreeze()
    _runs, _frozen_by_us = 0, False


os.register_at_fork(after_in_child=_after_fork_in_child)
