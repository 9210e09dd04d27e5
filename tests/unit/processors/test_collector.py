"""After recovery the worker's heap is frozen and young objects are collected rarely."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from sdlcflow.processors.collector import WORKER_GC_THRESHOLDS, freeze_settled_heap


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
        assert gc.get_freeze_count() >= len(settled)

    def test_young_objects_are_collected_at_the_worker_thresholds(self) -> None:
        asyncio.run(freeze_settled_heap(None))
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS
