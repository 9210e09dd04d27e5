"""Garbage collection tuned for a coordinator worker, so a collection is not a stall.

A started worker holds about 145,000 objects the cyclic collector tracks (faust, aiokafka,
rocksdb bindings, compiled codecs, templates) that nearly all live as long as it. With CPython's
defaults every full collection walked all of them: 80-380 ms with the event loop stopped,
about every 15-25 s at 200 tasks/s, plus young collections of up to 50 ms (measured with
`gc.callbacks` in the worker). Once recovery is done the heap is collected and frozen
(`gc.freeze`: never traversed again), and young objects are collected after 20,000 net
allocations instead of 700; at 200 tasks/s no full collection ran during a run and no young
one took over 7 ms. Frozen objects are still freed by reference counting; garbage cycles among
them wait for the next recovery, which unfreezes the heap and collects it all before freezing
it again.
"""

from __future__ import annotations

import gc
from typing import Any

# young collections every 20,000 net allocations (a few ms each), older ones as by default
WORKER_GC_THRESHOLDS = (20_000, 10, 10)


async def freeze_settled_heap(_app: Any, /, *_args: Any, **_kwargs: Any) -> None:
    """After recovery (faust's `on_rebalance_complete`): settle the heap. Again after each
    rebalance, whose recovery loads state."""
    settle_heap()


def settle_heap() -> None:
    """Collect once, freeze what is left, collect young objects rarely (also how
    benchmarks/core_bench.py runs the core as a worker would)."""
    gc.unfreeze()  # what an earlier recovery froze may be garbage now (e.g. forgotten state)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
