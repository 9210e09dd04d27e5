"""Which offsets may be committed when messages finish out of order.

With N tasks in flight, a later offer may finish before an earlier one. Committing its offset
would tell Kafka the earlier one is done too, and a crash would lose it. So per partition we
commit only up to (not including) the lowest offset still unfinished.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    pending: list[int] = field(default_factory=list)  # heap of unfinished offsets
    finished: set[int] = field(default_factory=set)  # finished but not yet the lowest
    next_offset: int = -1  # one past the highest offset seen
    committed: int = -1


class OffsetTracker:
    """Per-partition watermarks: `committable()` never passes an unfinished message."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        part = self._partitions.setdefault(tp, _Partition())
        heapq.heappush(part.pending, offset)
        part.next_offset = max(part.next_offset, offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        part = self._partitions.get(tp)
        if part is None:
            return
        part.finished.add(offset)
        while part.pending and part.pending[0] in part.finished:
            part.finished.discard(heapq.heappop(part.pending))

    def in_flight(self) -> int:
        return sum(len(p.pending) - len(p.finished) for p in self._partitions.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets to commit now (only partitions that moved since the last call)."""
        out: dict[TopicPartition, int] = {}
        for tp, part in self._partitions.items():
            mark = part.pending[0] if part.pending else part.next_offset
            if mark > part.committed:
                out[tp] = mark
                part.committed = mark
        return out

    def forget(self, tps: list[TopicPartition]) -> None:
        """Partitions revoked in a rebalance: their new owner decides from the committed offset."""
        for tp in tps:
            self._partitions.pop(tp, None)
