"""`take_ready` hands a batch over as soon as the consumer is free, in order, never above max."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust

from sdlcflow.processors.batching import take_ready

MAX = 3


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def _run_batches(values: range) -> tuple[list[list[Any]], list[list[Any]]]:
    """(batches seen before the consumer was released, all batches): the consumer blocks on
    its first batch while the rest of `values` arrive."""
    app = faust.App("take-ready-test", broker="kafka://127.0.0.1:1", store="memory://")
    batches: list[list[Any]] = []
    release = asyncio.Event()

    @app.agent()
    async def collect(stream: Any) -> None:
        async for batch in take_ready(stream, MAX):
            batches.append([event.value for event in batch])
            await release.wait()

    async with collect.test_context() as agent:
        first, *rest = values
        await agent.put(first)
        await _until(lambda: bool(batches), timeout_s=2.0)  # no fill window to wait out
        puts = [asyncio.ensure_future(agent.put(value)) for value in rest]
        await asyncio.sleep(0)
        blocked = [list(batch) for batch in batches]
        release.set()
        await _until(lambda: sum(map(len, batches)) == len(values))
        await asyncio.gather(*puts)
    return blocked, batches


class TestTakeReady:
    """Natural batching for the coordinator: no fill window, order kept, bounded."""

    def test_the_first_input_is_handed_over_alone_without_waiting_for_more(self) -> None:
        blocked, _ = asyncio.run(_run_batches(range(8)))
        assert blocked == [[0]]

    def test_inputs_arriving_meanwhile_come_in_order_in_batches_of_at_most_max(self) -> None:
        _, batches = asyncio.run(_run_batches(range(8)))
        assert [value for batch in batches for value in batch] == list(range(8))
        assert all(1 <= len(batch) <= MAX for batch in batches)
        assert len(batches) < 8  # what queued up while the consumer was busy came together
