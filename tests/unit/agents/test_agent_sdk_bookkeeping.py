"""Pure bookkeeping of the Worker: the lease clock and the commit watermark."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sdlcflow.agents._lease import LeaseClock, LeasePhase
from sdlcflow.agents._offsets import OffsetTracker

TP = ("sdlc.tasks.lint", 0)


class TestLeaseClock:
    """Heartbeats every TTL/3; silence past the coordinator's TTL means the lease is lost."""

    def clock(self) -> LeaseClock:
        # granted for 30 s by a decision stamped 1_000; our request left at local time 500
        return LeaseClock.granted(
            "l1", 2, expires_at=31_000, occurred_at=1_000, requested_local=500
        )

    def test_heartbeat_falls_due_after_a_third_of_the_ttl(self) -> None:
        clock = self.clock()
        assert not clock.heartbeat_due(500 + 9_999)
        assert clock.heartbeat_due(500 + 10_000)

    def test_deadline_is_measured_from_when_the_request_left(self) -> None:
        clock = self.clock()
        assert not clock.silent(30_499)
        assert clock.silent(30_500)

    def test_extension_counts_from_the_heartbeat_that_caused_it(self) -> None:
        clock = self.clock()
        clock.heartbeat_sent("hb-1", 10_500)
        clock.extended(expires_at=70_000, occurred_at=40_000, cause_id="hb-1", now=12_000)
        assert clock.deadline == 10_500 + 30_000
        assert not clock.silent(40_000)

    def test_fence_allows_one_result_and_none_after_loss(self) -> None:
        clock = self.clock()
        assert clock.lose("revoked")
        assert not clock.result_sent()
        assert clock.phase is LeasePhase.LOST
        assert not clock.lose("again")

    def test_result_sent_ends_heartbeating(self) -> None:
        clock = self.clock()
        assert clock.result_sent()
        assert not clock.heartbeat_due(10**9)
        assert not clock.silent(10**9)


class TestOffsetTracker:
    """Offsets are committed only below the lowest unfinished message of each partition."""

    def test_a_later_finish_does_not_commit_past_an_earlier_unfinished_offer(self) -> None:
        tracker = OffsetTracker()
        for offset in (5, 6, 7):
            tracker.started(TP, offset)
        tracker.finished(TP, 7)
        assert tracker.committable() == {TP: 5}
        tracker.finished(TP, 5)
        assert tracker.committable() == {TP: 6}
        tracker.finished(TP, 6)
        assert tracker.committable() == {TP: 8}
        assert tracker.committable() == {}

    def test_forgotten_partitions_are_not_committed(self) -> None:
        tracker = OffsetTracker()
        tracker.started(TP, 1)
        tracker.forget([TP])
        tracker.finished(TP, 1)
        assert tracker.committable() == {}

    @given(st.permutations(list(range(12))), st.integers(0, 12))
    def test_committed_offset_never_passes_an_unfinished_one(
        self, order: list[int], finished_count: int
    ) -> None:
        tracker = OffsetTracker()
        for offset in range(12):
            tracker.started(TP, offset)
        done = set(order[:finished_count])
        for offset in order[:finished_count]:
            tracker.finished(TP, offset)
        mark = tracker.committable().get(TP, 0)
        assert all(offset in done for offset in range(mark))
        unfinished = [o for o in range(12) if o not in done]
        assert mark == (min(unfinished) if unfinished else 12)
        assert tracker.in_flight() == len(unfinished)
