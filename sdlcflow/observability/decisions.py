"""Domain metrics derived from the decisions the coordinator emits — in one place.

The core stays free of metrics calls: the processors hand each batch's decisions to a
`DecisionMeter`, whose `updates(decisions)` turns them into `MetricUpdate`s (pure: no clock,
no registry; durations come from the events' own `occurred_at`), and `apply` feeds those to
the Prometheus registry. The meter remembers, per task, when it was first enqueued and its
capability, and per change when it was planned and its first unrepaired failure; memory is
bounded (oldest forgotten first), and after a restart only tasks enqueued since then are
timed — counters are exact, latency histograms sample what this worker saw begin.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar

from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.observability import metrics

UNKNOWN = "unknown"
MAX_REMEMBERED = 100_000

_LEASE_OUTCOMES: dict[type, str] = {
    ev.LeaseGranted: "granted",
    ev.LeaseDenied: "denied",
    ev.LeaseExpired: "expired",
    ev.LeaseRevoked: "revoked",
    ev.LeaseReturned: "released",
}
_CHANGE_ENDS: dict[type, str] = {
    ev.ChangePromoted: "promoted",
    ev.ChangeBlocked: "blocked",
    ev.ChangeFailed: "failed",
    ev.ChangeWithdrawn: "withdrawn",
}


class Kind(StrEnum):
    INC = "inc"
    OBSERVE = "observe"


INC = Kind.INC


class MetricUpdate(NamedTuple):
    """One change to one metric: add `value` to a counter or observe it in a histogram.

    A NamedTuple, not a dataclass: a busy coordinator makes a few per decision."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    kind: Kind
    value: float = 1.0


K = TypeVar("K")
V = TypeVar("V")


class _Bounded(OrderedDict[K, V], Generic[K, V]):
    """A dict that forgets its oldest entries past `MAX_REMEMBERED`."""

    def remember(self, key: K, value: V) -> None:
        self[key] = value
        while len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


def _inc(metric: str, **labels: str) -> MetricUpdate:
    return MetricUpdate(metric, tuple(sorted(labels.items())), Kind.INC)


def _observe(metric: str, seconds: float, **labels: str) -> MetricUpdate:
    return MetricUpdate(metric, tuple(sorted(labels.items())), Kind.OBSERVE, max(0.0, seconds))


# the updates of the most frequent decisions, made once
_LEASE_UPDATES = {
    kind: _inc("sdlcflow_leases", outcome=outcome) for kind, outcome in _LEASE_OUTCOMES.items()
}


class DecisionMeter:
    """Turns decisions into metric updates; remembers just enough to time tasks and changes."""

    def __init__(self) -> None:
        self._enqueued: _Bounded[str, tuple[int, str]] = _Bounded()  # task -> (ms, capability)
        self._capability: _Bounded[str, str] = _Bounded()  # task -> capability
        self._planned: _Bounded[str, int] = _Bounded()  # change -> ms
        self._failing: _Bounded[str, int] = _Bounded()  # change -> first unrepaired failure ms

    def updates(self, decisions: Iterable[Event]) -> list[MetricUpdate]:
        """The metric updates the given decisions imply, in order."""
        out: list[MetricUpdate] = []
        for decision in decisions:
            out.append(MetricUpdate("sdlcflow_decisions", (("type", decision.envelope.type),), INC))
            lease = _LEASE_UPDATES.get(type(decision.payload))
            if lease is not None:
                out.append(lease)
                if isinstance(decision.payload, ev.LeaseDenied):
                    reason = decision.payload.reason.value
                    out.append(_inc("sdlcflow_lease_denials", reason=reason))
            else:
                out.extend(self._one(decision))
        return out

    def _one(self, decision: Event) -> list[MetricUpdate]:
        payload, envelope = decision.payload, decision.envelope
        at, task, change = envelope.occurred_at, envelope.task_id, envelope.change_id
        if isinstance(payload, ev.TaskReady | ev.TaskOffered) and task is not None:
            capability = (
                payload.capability
                if isinstance(payload, ev.TaskReady)
                else payload.contract.capability
            )
            self._capability.remember(task, capability)
            if task not in self._enqueued:
                self._enqueued.remember(task, (at, capability))
            return []
        if isinstance(payload, ev.TaskCompleted):
            return self._completed(task, change, at)
        if isinstance(payload, ev.RetryScheduled | ev.TaskDeadLettered):
            if change is not None and change not in self._failing:
                self._failing.remember(change, at)
            if isinstance(payload, ev.TaskDeadLettered) and task is not None:
                self._enqueued.pop(task, None)
            kind = "retry" if isinstance(payload, ev.RetryScheduled) else "dead_letter"
            return [_inc("sdlcflow_task_failures", outcome=kind)]
        if isinstance(payload, ev.PolicyEvaluated):
            return [
                _inc(
                    "sdlcflow_policy_decisions",
                    decision=payload.decision.value,
                    enforced=str(payload.enforced).lower(),
                )
            ]
        if isinstance(payload, ev.ChangePlanned) and change is not None:
            self._planned.remember(change, at)
            return []
        end = _CHANGE_ENDS.get(type(payload))
        if end is not None:
            return self._ended(change, end, at)
        return []

    def _completed(self, task: str | None, change: str | None, at: int) -> list[MetricUpdate]:
        capability = self._capability.get(task, UNKNOWN) if task else UNKNOWN
        out = [_inc("sdlcflow_tasks_completed", capability=capability)]
        enqueued = self._enqueued.pop(task, None) if task else None
        if enqueued is not None:
            start, capability = enqueued
            out.append(
                _observe(
                    "sdlcflow_task_enqueue_to_completion_seconds",
                    (at - start) / 1000,
                    capability=capability,
                )
            )
        failed_at = self._failing.pop(change, None) if change else None
        if failed_at is not None:
            out.append(_observe("sdlcflow_mttr_seconds", (at - failed_at) / 1000))
        return out

    def _ended(self, change: str | None, outcome: str, at: int) -> list[MetricUpdate]:
        out = [_inc("sdlcflow_changes", outcome=outcome)]
        planned = self._planned.pop(change, None) if change else None
        if planned is not None:
            out.append(
                _observe("sdlcflow_change_duration_seconds", (at - planned) / 1000, outcome=outcome)
            )
        if change is not None:
            self._failing.pop(change, None)
        return out


_METRICS = {
    "sdlcflow_decisions": metrics.DECISIONS,
    "sdlcflow_leases": metrics.LEASES,
    "sdlcflow_lease_denials": metrics.LEASE_DENIALS,
    "sdlcflow_tasks_completed": metrics.TASKS_COMPLETED,
    "sdlcflow_task_enqueue_to_completion_seconds": metrics.TASK_LATENCY,
    "sdlcflow_task_failures": metrics.TASKS_FAILED,
    "sdlcflow_mttr_seconds": metrics.MTTR,
    "sdlcflow_policy_decisions": metrics.POLICY_DECISIONS,
    "sdlcflow_changes": metrics.CHANGES,
    "sdlcflow_change_duration_seconds": metrics.CHANGE_LATENCY,
}


def apply(updates: Sequence[MetricUpdate]) -> None:
    """Feed updates to the process's registry (increments summed first: one lock per series)."""
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for update in updates:
        if update.kind is Kind.INC:
            key = (update.metric, update.labels)
            sums[key] = sums.get(key, 0.0) + update.value
        else:
            _child(update.metric, update.labels).observe(update.value)
    for (metric, labels), total in sums.items():
        _child(metric, labels).inc(total)


_children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}


def _child(metric: str, labels: tuple[tuple[str, str], ...]) -> Any:
    """The labelled series, looked up once (prometheus-client's `labels()` is not cheap)."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        family = _METRICS[metric]
        child = _children[key] = family.labels(**dict(labels)) if labels else family
    return child


class BatchObserver:
    """What a processors worker records per batch: decisions, inputs, dead letters, time."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.meter = DecisionMeter()

    def observe(
        self, decisions: Sequence[Event], inputs: int, dead_letters: int, seconds: float
    ) -> None:
        apply(self.meter.updates(decisions))
        metrics.EVENTS_HANDLED.labels(self.component).inc(inputs)
        if dead_letters:
            metrics.DEAD_LETTERS.labels(self.component).inc(dead_letters)
        metrics.BATCH_SECONDS.labels(self.component).observe(seconds)
