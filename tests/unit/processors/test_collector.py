"""After recovery the worker's heap is frozen and young objects are collected rarely."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from sdlcflow.processors.collector import WORKER_GC_THRESHOLDS, freeze_settled_heap


class _Node:
    """A weakly referenceable member of a garbage cycle."""

    def __init__(self, cycle: list[object]) -> None:
        cycle.append(self)
        self.cycle = cycle


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


@pytest.mark.usefixtures("restored_collector")
class TestFreezeSettledHeap:
    def test_objects_alive_after_recovery_are_frozen_out_of_collections(self) -> None:
        settled = [[index] for index in range(1000)]
        asyncio.run(freeze_settled_heap(None))
        collected = {id(obj) for obj in gc.get_objects()}  # frozen objects are not among them
        assert not any(id(item) in collected for item in settled)

    def test_a_later_recovery_collects_cycles_frozen_by_an_earlier_one(self) -> None:
        cycle: list[object] = []
        cycle.append(cycle)
        asyncio.run(freeze_settled_heap(None))
        witness = weakref.ref(_Node(cycle))
        del cycle
        asyncio.run(freeze_settled_heap(None))
        assert witness() is None

    def test_young_objects_are_collected_at_the_worker_thresholds(self) -> None:
        asyncio.run(freeze_settled_heap(None))
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS
