"""The daemon's garbage-collector policy (bootstrapd/heap.py): automatic collections walk only what was
allocated since the previous one (their survivors are frozen), and the sweep still frees the reference
cycles that died after they were frozen."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from bootstrapd import heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def settled() -> Iterator[None]:
    """heap.settle() for one test; the interpreter's collector as it was afterwards."""
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    heap.settle()
    try:
        yield
    finally:
        if heap._freeze_survivors in gc.callbacks:
            gc.callbacks.remove(heap._freeze_survivors)
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
        gc.unfreeze()
        gc.collect()


def test_an_automatic_collection_freezes_its_survivors(settled: None) -> None:
    frozen = gc.get_freeze_count()
    kept = [[n] for n in range(3 * heap.YOUNG)]  # more than one young generation's worth of survivors
    assert gc.get_count()[0] < heap.YOUNG  # a collection ran meanwhile
    assert gc.get_freeze_count() >= frozen + 2 * heap.YOUNG  # and moved what it found alive out of reach
    assert sum(len(gc.get_objects(generation)) for generation in range(3)) < 2 * heap.YOUNG
    del kept


def test_the_sweep_frees_cycles_that_died_frozen(settled: None) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    gc.collect()  # the cycle survives (still referenced) and is frozen
    assert gc.get_freeze_count() > 0
    del a, b
    gc.collect()
    assert alive() is not None  # dead, but frozen: no collection of the generations reaches it
    collected, seconds = heap.sweep()
    assert alive() is None and collected >= 2 and seconds >= 0
    assert gc.get_freeze_count() > 0  # the survivors are frozen again
