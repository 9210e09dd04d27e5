"""Decision cache keyed by (bundle digest, input digest).

What is cached is the raw per-policy evaluation, before modes are applied, so switching a
policy between audit and enforce never serves a stale effective outcome. Evaluations that
errored are never cached: an error might be transient, and REVIEW must be re-earned.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sdlcflow.policy.evaluation import RawResult

CacheKey = tuple[str, str]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class DecisionCache:
    """A bounded LRU map; not thread-safe (the engine holds its own lock around it)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._entries: OrderedDict[CacheKey, tuple[RawResult, ...]] = OrderedDict()
        self._max = max_entries
        self.stats = CacheStats()

    def get(self, key: CacheKey) -> tuple[RawResult, ...] | None:
        found = self._entries.get(key)
        if found is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return found

    def put(self, key: CacheKey, results: tuple[RawResult, ...]) -> None:
        if any(r.error for r in results):
            return
        self._entries[key] = results
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
