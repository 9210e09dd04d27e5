"""Agent, audit-sink and live-lease metrics are read from the services' own counters."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from typing import Any

from observability_states import state, task

from sdlcflow.agents._worker import WorkerStats
from sdlcflow.audit.sink import SinkStats
from sdlcflow.core.state import RepoState
from sdlcflow.observability import metrics
from sdlcflow.observability.collectors import (
    live_leases,
    watch_leases,
    watch_sink,
    watch_worker,
)


@dataclass
class _Worker:
    stats: WorkerStats
    definitions: dict[str, Any] = field(default_factory=lambda: {"lint": None})


@dataclass
class _Sink:
    stats: SinkStats
    group_id: str = "unit-audit"


def _value(name: str, labels: dict[str, str]) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


class TestAgentCollector:
    """A watched Worker's counters and waits appear under its capabilities until unwatched."""

    def test_worker_counters_and_waits_are_exposed(self) -> None:
        stats = WorkerStats(offers=5, granted=3, denied=2, succeeded=2, failed=1, accepted=2)
        stats.grant_latency_ms.extend([4.0, 40.0])
        unwatch = watch_worker(_Worker(stats))
        try:
            assert _value("sdlcflow_agent_offers_total", {"agent": "lint"}) == 5
            labels = {"agent": "lint", "outcome": "denied"}
            assert _value("sdlcflow_agent_lease_answers_total", labels) == 2
            wait = {"agent": "lint", "le": "0.005"}
            assert _value("sdlcflow_agent_lease_wait_seconds_bucket", wait) == 1
            assert _value("sdlcflow_agent_lease_wait_seconds_count", {"agent": "lint"}) == 2
        finally:
            unwatch()
        assert _value("sdlcflow_agent_offers_total", {"agent": "lint"}) is None


class TestSinkCollector:
    """A watched audit sink's counters and lag appear under its group."""

    def test_sink_counters_and_lag_are_exposed(self) -> None:
        stats = SinkStats(consumed=10, stored=9, dead_lettered=1, lag_max_ms=2500)
        unwatch = watch_sink(_Sink(stats))
        try:
            group = {"group": "unit-audit"}
            assert _value("sdlcflow_audit_events_stored_total", group) == 9
            assert _value("sdlcflow_audit_dead_letters_total", group) == 1
            assert _value("sdlcflow_audit_lag_max_seconds", group) == 2.5
        finally:
            unwatch()


class TestLiveLeases:
    """Live leases are counted from the cached states, by capability."""

    def test_only_held_leases_count(self) -> None:
        states = [state(task("lint", True), task("test", False)), state(task("lint", True))]
        assert live_leases(states) == {"lint": 2}

    def test_the_gauge_reads_the_states_at_scrape_time(self) -> None:
        states: list[RepoState] = []
        unwatch = watch_leases(lambda: states)
        try:
            assert _value("sdlcflow_leases_live", {"capability": "deploy"}) is None
            states.append(state(task("deploy", True)))
            assert _value("sdlcflow_leases_live", {"capability": "deploy"}) == 1
        finally:
            unwatch()


class TestServe:
    """serve(port) exposes the registry over HTTP in the Prometheus text format."""

    def test_metrics_are_served_on_a_free_port(self) -> None:
        server = metrics.serve(0, addr="127.0.0.1")
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        finally:
            server.close()
        assert "# TYPE sdlcflow_leases_total counter" in text
        assert "sdlcflow_task_enqueue_to_completion_seconds_bucket" in text or (
            "# TYPE sdlcflow_task_enqueue_to_completion_seconds histogram" in text
        )
