"""Latency samples of a long-running process in bounded memory.

A worker that kept every sample grew by three floats per task for as long as it ran, and each
/metrics scrape re-binned them all. Here the histogram a scrape reads is cumulative counts kept
as samples arrive, and only the most recent samples are kept for percentiles (benchmarks).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from sdlcflow.observability.metrics import LATENCY_BUCKETS

RECENT_SAMPLES = 100_000


class LatencySamples:
    """Milliseconds observed: cumulative bucket counts since start, and the latest samples."""

    def __init__(
        self, bounds_s: Sequence[float] = LATENCY_BUCKETS, keep: int = RECENT_SAMPLES
    ) -> None:
        self.bounds_s = tuple(bounds_s)
        self._counts = [0] * (len(self.bounds_s) + 1)  # the last one is +Inf
        self._recent: deque[float] = deque(maxlen=keep)
        self.count = 0
        self.sum_s = 0.0

    def append(self, value_ms: float) -> None:
        seconds = value_ms / 1000
        self._counts[bisect.bisect_left(self.bounds_s, seconds)] += 1
        self._recent.append(value_ms)
        self.count += 1
        self.sum_s += seconds

    def extend(self, values_ms: Iterable[float]) -> None:
        for value in values_ms:
            self.append(value)

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, samples at or below it) per bucket, as Prometheus exposes them."""
        total, buckets = 0, []
        for bound, count in zip((*map(str, self.bounds_s), "+Inf"), self._counts, strict=True):
            total += count
            buckets.append((bound, float(total)))
        return buckets

    def since(self, mark: int) -> list[float]:
        """The samples observed after the first `mark` (those still kept): a benchmark takes
        `count` as a mark before a phase and reads the phase's samples after it."""
        wanted = max(self.count - mark, 0)
        kept = min(wanted, len(self._recent))
        return list(self._recent)[len(self._recent) - kept :]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[float]:
        return iter(self._recent)
