"""Metrics read at scrape time from counters the services already keep.

The agent Worker (`WorkerStats`), the audit sink (`SinkStats`) and the coordinator's cached
repository states already count what an operator wants; rather than add a metrics call next to
each counter, a collector reads them when Prometheus scrapes. Services register themselves with
`watch_worker`, `watch_sink` and `watch_leases`; with nothing registered the metrics are absent.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sdlcflow.core.state import RepoState
from sdlcflow.observability import metrics
from sdlcflow.observability.latency import LatencySamples


class _WorkerLike(Protocol):
    @property
    def stats(self) -> Any: ...

    @property
    def definitions(self) -> Mapping[str, Any]: ...


class _SinkLike(Protocol):
    @property
    def stats(self) -> Any: ...

    @property
    def group_id(self) -> str: ...


def _histogram(
    name: str, doc: str, labels: dict[str, str], samples: LatencySamples
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), samples.cumulative(), samples.sum_s)
    return family


class _Watched(Collector, ABC):
    """A collector over services registered at run time; describes its families up front."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Any] = []

    def add(self, source: Any) -> None:
        with self._lock:
            self._sources.append(source)

    def remove(self, source: Any) -> None:
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)

    def sources(self) -> list[Any]:
        with self._lock:
            return list(self._sources)

    def describe(self) -> Iterable[Metric]:
        return list(self.families([]))

    def collect(self) -> Iterable[Metric]:
        return list(self.families(self.sources()))

    @abstractmethod
    def families(self, sources: list[Any]) -> Iterator[Metric]:
        """The metric families over these sources (none: the empty families, for describe)."""


class AgentCollector(_Watched):
    """`sdlcflow_agent_*`: offers, lease answers, task outcomes, verdicts and waits per agent."""

    def families(self, sources: list[Any]) -> Iterator[Metric]:
        offers = CounterMetricFamily(
            "sdlcflow_agent_offers", "Task offers this agent considered.", labels=["agent"]
        )
        leases = CounterMetricFamily(
            "sdlcflow_agent_lease_answers",
            "Answers to this agent's lease requests (granted, denied, refused, unanswered).",
            labels=["agent", "outcome"],
        )
        tasks = CounterMetricFamily(
            "sdlcflow_agent_tasks",
            "Leased tasks this agent ran, by outcome (succeeded, failed, lost).",
            labels=["agent", "outcome"],
        )
        verdicts = CounterMetricFamily(
            "sdlcflow_agent_results",
            "The coordinator's verdict on this agent's results (accepted, rejected).",
            labels=["agent", "verdict"],
        )
        heartbeats = CounterMetricFamily(
            "sdlcflow_agent_heartbeats", "Lease heartbeats sent.", labels=["agent"]
        )
        waits: list[Metric] = []
        for worker in sources:
            agent, stats = "+".join(sorted(worker.definitions)), worker.stats
            offers.add_metric([agent], stats.offers)
            for outcome in ("granted", "denied", "refused", "unanswered"):
                leases.add_metric([agent, outcome], getattr(stats, outcome))
            for outcome in ("succeeded", "failed", "lost"):
                tasks.add_metric([agent, outcome], getattr(stats, outcome))
            verdicts.add_metric([agent, "accepted"], stats.accepted)
            verdicts.add_metric([agent, "rejected"], stats.rejected)
            heartbeats.add_metric([agent], stats.heartbeats)
            waits.append(
                _histogram(
                    "sdlcflow_agent_lease_wait_seconds",
                    "From a lease request sent to the coordinator's answer.",
                    {"agent": agent},
                    stats.grant_latency_ms,
                )
            )
            waits.append(
                _histogram(
                    "sdlcflow_agent_task_round_trip_seconds",
                    "From a lease request to the result's acceptance.",
                    {"agent": agent},
                    stats.round_trip_ms,
                )
            )
        yield from (offers, leases, tasks, verdicts, heartbeats)
        if waits:
            yield from waits
        else:
            yield HistogramMetricFamily(
                "sdlcflow_agent_lease_wait_seconds",
                "From a lease request sent to the coordinator's answer.",
                labels=["agent"],
            )
            yield HistogramMetricFamily(
                "sdlcflow_agent_task_round_trip_seconds",
                "From a lease request to the result's acceptance.",
                labels=["agent"],
            )


class SinkCollector(_Watched):
    """`sdlcflow_audit_*`: records consumed, events stored, dead letters, commits and lag."""

    def families(self, sources: list[Any]) -> Iterator[Metric]:
        counters = {
            "consumed": ("sdlcflow_audit_records_consumed", "Records read from sdlc.* topics."),
            "stored": ("sdlcflow_audit_events_stored", "Events written to Cassandra."),
            "dead_lettered": (
                "sdlcflow_audit_dead_letters",
                "Undecodable records the sink sent to sdlc.dead-letter.",
            ),
            "batches": ("sdlcflow_audit_batches", "Batches stored and committed."),
            "commit_failures": (
                "sdlcflow_audit_commit_failures",
                "Offset commits that failed (records re-delivered, stored idempotently).",
            ),
        }
        families = {
            field: CounterMetricFamily(name, doc, labels=["group"])
            for field, (name, doc) in counters.items()
        }
        lag_max = GaugeMetricFamily(
            "sdlcflow_audit_lag_max_seconds",
            "Longest time from a record's Kafka timestamp to its storage, since start.",
            labels=["group"],
        )
        lag_mean = GaugeMetricFamily(
            "sdlcflow_audit_lag_mean_seconds",
            "Mean time from a record's Kafka timestamp to its storage, since start.",
            labels=["group"],
        )
        for sink in sources:
            stats = sink.stats
            for field, family in families.items():
                family.add_metric([sink.group_id], getattr(stats, field))
            lag_max.add_metric([sink.group_id], stats.lag_max_ms / 1000)
            lag_mean.add_metric([sink.group_id], stats.lag_mean_ms / 1000)
        yield from (*families.values(), lag_max, lag_mean)


def live_leases(states: Iterable[RepoState]) -> dict[str, int]:
    """Leases held right now in these repository states, by capability."""
    counts: dict[str, int] = {}
    for state in states:
        for change in state.changes.values():
            for task in change.tasks.values():
                if task.lease is not None:
                    capability = task.contract.capability
                    counts[capability] = counts.get(capability, 0) + 1
    return counts


class LeaseCollector(_Watched):
    """`sdlcflow_leases_live`: leases held in the states a coordinator worker has cached.

    Every repository with a live change is loaded by the first tick of its partition, so
    within one tick interval of a start or rebalance the count covers the worker's partitions.
    """

    def families(self, sources: list[Any]) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sdlcflow_leases_live",
            "Leases currently held on tasks of the repositories this worker serves.",
            labels=["capability"],
        )
        totals: dict[str, int] = {}
        for source in sources:
            for capability, count in source().items():
                totals[capability] = totals.get(capability, 0) + count
        for capability, count in sorted(totals.items()):
            family.add_metric([capability], count)
        yield family


AGENTS = AgentCollector()
SINKS = SinkCollector()
LEASES = LeaseCollector()
for _collector in (AGENTS, SINKS, LEASES):
    metrics.REGISTRY.register(_collector)


def watch_worker(worker: _WorkerLike) -> Callable[[], None]:
    """Expose an agent Worker's counters; returns the function that stops it."""
    AGENTS.add(worker)
    return lambda: AGENTS.remove(worker)


def watch_sink(sink: _SinkLike) -> Callable[[], None]:
    """Expose an audit sink's counters; returns the function that stops it."""
    SINKS.add(sink)
    return lambda: SINKS.remove(sink)


def watch_leases(states: Callable[[], Iterable[RepoState]]) -> Callable[[], None]:
    """Expose the live leases of the states `states()` returns at scrape time."""

    def source() -> dict[str, int]:
        return live_leases(states())

    LEASES.add(source)
    return lambda: LEASES.remove(source)
