"""Domain metrics derived from the coordinator's decisions (the one mapping, no registry)."""

from __future__ import annotations

from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event, Payload
from sdlcflow.observability import metrics
from sdlcflow.observability.decisions import (
    BatchObserver,
    DecisionMeter,
    Kind,
    MetricUpdate,
    apply,
)

TRACE = "a" * 32
COORDINATOR = Actor(ActorKind.COORDINATOR, "test-coordinator")
STATE = ev.VerifiedState(head_sha="h" * 40)


def _event(payload: Payload, at: int, *, task: str | None = "t1", change: str = "c1") -> Event:
    envelope = Envelope(
        event_id=f"{type(payload).__name__}-{at}",
        type=type(payload).__name__,
        occurred_at=at,
        repo="acme/login",
        change_id=change,
        task_id=task,
        trace_id=TRACE,
        causation_id=None,
        actor=COORDINATOR,
    )
    return Event(envelope, payload)


def _completed(at: int, task: str = "t1", change: str = "c1") -> Event:
    payload = ev.TaskCompleted("l1", 1, "agent-1", 1, (), ev.Outputs(), (), None)
    return _event(payload, at, task=task, change=change)


def _retry(at: int, change: str = "c1") -> Event:
    return _event(ev.RetryScheduled("l1", 1, 1, 2, at + 100, 100, "boom"), at, change=change)


def _named(updates: list[MetricUpdate], metric: str) -> list[MetricUpdate]:
    return [u for u in updates if u.metric == metric]


class TestLeaseOutcomes:
    """Every lease decision counts once under its outcome; denials also under their reason."""

    def test_each_lease_decision_maps_to_its_outcome(self) -> None:
        decisions = [
            _event(ev.LeaseGranted("l1", "a", 1, 10, 1, ()), 1),
            _event(ev.LeaseDenied("b", ev.DenyReason.ALREADY_LEASED), 2),
            _event(ev.LeaseExpired("l1", 1, "a"), 3),
            _event(ev.LeaseRevoked("l1", 1, "a", next(iter(ev.RevokeReason))), 4),
            _event(ev.LeaseReturned("l1", 1, "a"), 5),
        ]
        updates = DecisionMeter().updates(decisions)
        outcomes = [dict(u.labels)["outcome"] for u in _named(updates, "sdlcflow_leases")]
        assert outcomes == ["granted", "denied", "expired", "revoked", "released"]
        denials = _named(updates, "sdlcflow_lease_denials")
        assert [dict(u.labels) for u in denials] == [{"reason": "ALREADY_LEASED"}]

    def test_every_decision_counts_under_its_type(self) -> None:
        updates = DecisionMeter().updates([_event(ev.TaskSkipped("when: false"), 1)])
        assert updates == [MetricUpdate("sdlcflow_decisions", (("type", "TaskSkipped"),), Kind.INC)]


class TestTaskLatency:
    """Enqueue->completion runs from a task's first TaskReady to its TaskCompleted."""

    def test_latency_is_timed_from_the_first_enqueue_by_capability(self) -> None:
        meter = DecisionMeter()
        meter.updates([_event(ev.TaskReady("lint", "lint"), 1_000)])
        meter.updates([_event(ev.TaskReady("lint", "lint"), 1_500)])  # re-offer: not a restart
        updates = meter.updates([_completed(4_000)])
        (latency,) = _named(updates, "sdlcflow_task_enqueue_to_completion_seconds")
        assert latency.kind is Kind.OBSERVE
        assert latency.value == 3.0
        assert dict(latency.labels) == {"capability": "lint"}
        (done,) = _named(updates, "sdlcflow_tasks_completed")
        assert dict(done.labels) == {"capability": "lint"}

    def test_a_completion_never_seen_enqueued_counts_but_is_not_timed(self) -> None:
        updates = DecisionMeter().updates([_completed(4_000)])
        assert _named(updates, "sdlcflow_task_enqueue_to_completion_seconds") == []
        (done,) = _named(updates, "sdlcflow_tasks_completed")
        assert dict(done.labels) == {"capability": "unknown"}


class TestMttr:
    """Time to repair runs from a change's first unrepaired failure to its next completion."""

    def test_mttr_spans_from_the_first_failure_to_the_next_success(self) -> None:
        meter = DecisionMeter()
        meter.updates([_retry(10_000), _retry(12_000)])
        updates = meter.updates([_completed(40_000)])
        (mttr,) = _named(updates, "sdlcflow_mttr_seconds")
        assert mttr.value == 30.0

    def test_a_success_of_another_change_repairs_nothing(self) -> None:
        meter = DecisionMeter()
        meter.updates([_retry(10_000, change="c1")])
        assert (
            _named(meter.updates([_completed(20_000, change="c2")]), "sdlcflow_mttr_seconds") == []
        )
        assert len(_named(meter.updates([_completed(30_000)]), "sdlcflow_mttr_seconds")) == 1

    def test_failures_count_by_what_followed(self) -> None:
        dead = _event(ev.TaskDeadLettered("l1", 1, 3, "boom"), 5)
        updates = DecisionMeter().updates([_retry(1), dead])
        kinds = [dict(u.labels)["outcome"] for u in _named(updates, "sdlcflow_task_failures")]
        assert kinds == ["retry", "dead_letter"]


class TestPolicyAndChanges:
    """Policy decisions count by decision and mode; changes by how they ended, timed from plan."""

    def test_policy_decisions_count_by_decision_and_mode(self) -> None:
        payload = ev.PolicyEvaluated(ev.PolicyDecision.FAIL, True, STATE, "d", ("no",))
        (update,) = _named(
            DecisionMeter().updates([_event(payload, 1)]), "sdlcflow_policy_decisions"
        )
        assert dict(update.labels) == {"decision": "FAIL", "enforced": "true"}

    def test_a_change_is_timed_from_its_plan_to_its_promotion(self) -> None:
        meter = DecisionMeter()
        planned = ev.ChangePlanned(
            "code-change",
            "digest",
            ev.ChangeFacts("code-change", (), (), (), ()),
            STATE,
            (),
            "u",
            "r",
        )
        meter.updates([_event(planned, 1_000, task=None)])
        updates = meter.updates([_event(ev.ChangePromoted(STATE, ()), 3_500, task=None)])
        (ended,) = _named(updates, "sdlcflow_changes")
        assert dict(ended.labels) == {"outcome": "promoted"}
        (took,) = _named(updates, "sdlcflow_change_duration_seconds")
        assert took.value == 2.5


class TestApply:
    """Updates reach the registry: increments summed per series, observations one by one."""

    def test_increments_and_observations_reach_the_registry(self) -> None:
        def sample(name: str, labels: dict[str, str]) -> float:
            value = metrics.REGISTRY.get_sample_value(name, labels)
            return value or 0.0

        before = sample("sdlcflow_leases_total", {"outcome": "granted"})
        count_before = sample("sdlcflow_mttr_seconds_count", {})
        apply(
            [
                MetricUpdate("sdlcflow_leases", (("outcome", "granted"),), Kind.INC),
                MetricUpdate("sdlcflow_leases", (("outcome", "granted"),), Kind.INC),
                MetricUpdate("sdlcflow_mttr_seconds", (), Kind.OBSERVE, 3.0),
            ]
        )
        assert sample("sdlcflow_leases_total", {"outcome": "granted"}) == before + 2
        assert sample("sdlcflow_mttr_seconds_count", {}) == count_before + 1

    def test_a_batch_counts_inputs_dead_letters_and_its_time(self) -> None:
        labels = {"component": "unit-test"}
        BatchObserver("unit-test").observe([_completed(1)], inputs=7, dead_letters=2, seconds=0.01)
        assert metrics.REGISTRY.get_sample_value("sdlcflow_events_handled_total", labels) == 7
        assert (
            metrics.REGISTRY.get_sample_value("sdlcflow_dead_letters_published_total", labels) == 2
        )
        assert metrics.REGISTRY.get_sample_value("sdlcflow_batch_seconds_count", labels) == 1
