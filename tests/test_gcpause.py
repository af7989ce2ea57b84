"""gcpause: the objects older than a run are frozen while it runs, and only while it runs."""
from __future__ import annotations

import gc
import os
import threading
import weakref

import pytest

from hl_notebook import gcpause


class Node:
    other: "Node"


def cyclic_garbage() -> weakref.ref:
    """A two-object cycle nobody refers to: only a collection frees it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def nothing_frozen():
    gc.collect()
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_collections_in_the_block_skip_older_garbage_and_the_first_after_it_takes_it():
    older = cyclic_garbage()
    with gcpause.old_objects_frozen():
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert older() is not None  # frozen: not walked
        younger = cyclic_garbage()
        gc.collect()
        assert younger() is None  # what the block makes is collected as usual
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert older() is None


def test_overlapping_blocks_unfreeze_when_the_last_one_ends():
    first_in, second_done = threading.Event(), threading.Event()
    seen = []

    def other_run():
        with gcpause.old_objects_frozen():
            first_in.set()
            second_done.wait(10)
            seen.append(gc.get_freeze_count() > 0)

    thread = threading.Thread(target=other_run)
    thread.start()
    assert first_in.wait(10)
    with gcpause.old_objects_frozen():
        pass
    still = gc.get_freeze_count() > 0  # the other run is still going
    second_done.set()
    thread.join(10)
    assert still and seen == [True]
    assert gc.get_freeze_count() == 0


def test_a_freeze_made_by_the_process_itself_is_left_alone():
    gc.freeze()
    with gcpause.old_objects_frozen():
        pass
    # still frozen (unfreezing would make the count 0; it only drops by frozen objects freed meanwhile)
    assert gc.get_freeze_count() > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_during_a_run_has_nothing_of_it_frozen():
    with gcpause.old_objects_frozen():
        pid = os.fork()
        if pid == 0:  # the child: no run of its own is in progress
            os._exit(0 if gc.get_freeze_count() == 0 else 1)
        _, status = os.waitpid(pid, 0)
        assert gc.get_freeze_count() > 0  # the parent's run goes on frozen
    assert os.waitstatus_to_exitcode(status) == 0
