"""The fault schedule is a pure function of the seed and the profile."""

from __future__ import annotations

from collections import Counter

from sdlcflow.chaos.faults import LONG, SHORT, FaultKind, schedule


class TestSchedule:
    """Every planned fault goes off once, in time order, inside the window, reproducibly."""

    def test_the_same_seed_gives_the_same_schedule_and_another_seed_another(self) -> None:
        assert schedule(7, SHORT) == schedule(7, SHORT)
        assert schedule(7, SHORT) != schedule(8, SHORT)

    def test_each_kind_appears_as_often_as_the_profile_asks(self) -> None:
        for profile in (SHORT, LONG):
            counts = Counter(fault.kind for fault in schedule(3, profile))
            assert counts == Counter(dict(profile.faults))

    def test_faults_are_in_time_order_after_a_quiet_start_and_inside_the_window(self) -> None:
        planned = schedule(11, SHORT)
        times = [fault.at_s for fault in planned]
        assert times == sorted(times)
        assert times[0] >= SHORT.fault_window_s * 0.1
        assert times[-1] <= SHORT.fault_window_s

    def test_a_zombie_is_paused_past_its_lease_and_outages_last_as_configured(self) -> None:
        holds = {fault.kind: fault.hold_s for fault in schedule(5, LONG)}
        assert holds[FaultKind.ZOMBIE_AGENT] > LONG.lease_ttl_ms / 1000
        assert holds[FaultKind.STOP_CASSANDRA] == 60.0
        assert holds[FaultKind.REVOKE_LEASE] == 0.0
