"""The status overview sums lag per topic and reads live leases from /metrics endpoints."""

from __future__ import annotations

from observability_states import state, task

from sdlcflow.observability import metrics
from sdlcflow.observability.collectors import watch_leases
from sdlcflow.observability.lag import MemberAssignment, PartitionLag
from sdlcflow.observability.overview import GroupOverview, live_leases


class TestGroupOverview:
    """Lag is summed per topic; the JSON names each member's partitions."""

    def test_lag_is_summed_per_topic(self) -> None:
        lags = (
            PartitionLag("g", "sdlc.coordinator", 0, committed=5, high=9),
            PartitionLag("g", "sdlc.coordinator", 1, committed=3, high=3),
            PartitionLag("g", "sdlc.ticks", 0, committed=10, high=12),
        )
        member = MemberAssignment("g", "m-1", "/10.0.0.1", (("sdlc.coordinator", 0),))
        view = GroupOverview("g", (member,), lags)
        assert view.lag_by_topic() == {"sdlc.coordinator": 4, "sdlc.ticks": 2}
        document = view.to_json()
        assert document["members"] == [
            {"member": "m-1", "host": "/10.0.0.1", "partitions": ["sdlc.coordinator:0"]}
        ]

    def test_lag_never_goes_negative(self) -> None:
        assert PartitionLag("g", "t", 0, committed=9, high=5).lag == 0


class TestLiveLeases:
    """Live leases are summed by capability over the /metrics endpoints given."""

    def test_leases_are_read_from_metrics_endpoints(self) -> None:
        unwatch = watch_leases(lambda: [state(task("merge", True))])
        server = metrics.serve(0, addr="127.0.0.1")
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            assert live_leases([url, url]) == {"merge": 2}
        finally:
            server.close()
            unwatch()
