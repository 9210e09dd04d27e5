"""Each invariant check catches a hand-built violating log and passes the clean one."""

from __future__ import annotations

import itertools
from dataclasses import replace

from sdlcflow.agents import task_contract
from sdlcflow.chaos import invariants
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event, Payload, VerifiedState

REPO = "acme/web"
CHANGE = "change-1"
STATE = VerifiedState("h" * 40, "b" * 40, "")
MOVED = VerifiedState("9" * 40, "b" * 40, "")
REVOKED = ev.RevokeReason.CREDENTIAL_REVOKED
_ids = itertools.count()


def decision(payload: Payload, *, task: str | None = None, change: str = CHANGE) -> Event:
    envelope = Envelope(
        event_id=f"e-{next(_ids)}",
        type=type(payload).__name__,
        occurred_at=1_000,
        repo=REPO,
        change_id=change,
        task_id=f"{change}/{task}" if task else None,
        trace_id="0" * 32,
        causation_id=None,
        actor=Actor(ActorKind.COORDINATOR, "coordinator"),
    )
    return Event(envelope, payload)


def planned(*steps: str) -> Event:
    tasks = tuple(task_contract(step, change_id=CHANGE) for step in steps)
    facts = ev.ChangeFacts("code", (), (), (), ())
    return decision(ev.ChangePlanned("code-change", "d", facts, STATE, tasks, "producer", "r"))


def granted(task: str, lease: str, epoch: int, holder: str = "agent-a") -> Event:
    return decision(ev.LeaseGranted(lease, holder, epoch, 9_000, 1, ()), task=task)


def completed(
    task: str, lease: str, epoch: int, holder: str = "agent-a", state: VerifiedState = STATE
) -> Event:
    outputs = ev.Outputs()
    return decision(ev.TaskCompleted(lease, epoch, holder, 1, (), outputs, (), state), task=task)


def expired(task: str, lease: str, epoch: int, holder: str = "agent-a") -> Event:
    return decision(ev.LeaseExpired(lease, epoch, holder), task=task)


def promoted(state: VerifiedState = STATE) -> Event:
    return decision(ev.ChangePromoted(state, ()))


def kinds(violations: list[invariants.Violation]) -> list[str]:
    return [v.invariant for v in violations]


CLEAN = [
    planned("lint", "merge"),
    granted("lint", "l1", 1),
    completed("lint", "l1", 1),
    granted("merge", "m1", 1),
    expired("merge", "m1", 1),
    granted("merge", "m2", 2, holder="agent-b"),
    completed("merge", "m2", 2, holder="agent-b"),
    promoted(),
]


class TestLostChanges:
    """Every submitted change has a terminal outcome on the log."""

    def test_a_closed_change_is_not_lost(self) -> None:
        assert invariants.lost_changes([CHANGE], CLEAN) == []

    def test_a_change_without_outcome_is_lost(self) -> None:
        found = invariants.lost_changes([CHANGE, "change-2"], CLEAN)
        assert [(v.invariant, v.subject) for v in found] == [("change-lost", "change-2")]

    def test_two_different_closings_of_one_change_are_caught(self) -> None:
        log = [*CLEAN, decision(ev.ChangeFailed("late", "x"))]
        assert kinds(invariants.double_closings(log)) == ["change-closed-twice"]

    def test_a_redelivered_closing_is_one_closing(self) -> None:
        assert invariants.double_closings([*CLEAN, CLEAN[-1]]) == []


class TestLeaseViolations:
    """Leases never overlap; completions carry the live lease; a task completes once."""

    def test_the_clean_log_has_no_lease_violation(self) -> None:
        assert invariants.lease_violations(CLEAN) == []

    def test_a_grant_while_another_lease_is_live_overlaps(self) -> None:
        log = [planned("lint"), granted("lint", "l1", 1), granted("lint", "l2", 2, "agent-b")]
        assert kinds(invariants.lease_violations(log)) == ["overlapping-lease"]

    def test_a_completion_with_an_expired_lease_is_a_fenced_result_accepted(self) -> None:
        log = [
            planned("lint"),
            granted("lint", "l1", 1),
            expired("lint", "l1", 1),
            completed("lint", "l1", 1),
        ]
        found = invariants.lease_violations(log)
        assert kinds(found) == ["fenced-result-accepted"]
        assert "already ended" in found[0].detail

    def test_a_completion_by_the_older_epoch_while_a_newer_holds_the_task_is_caught(self) -> None:
        log = [
            planned("lint"),
            granted("lint", "l1", 1),
            decision(ev.LeaseRevoked("l1", 1, "agent-a", REVOKED), task="lint"),
            granted("lint", "l2", 2, "agent-b"),
            completed("lint", "l1", 1),
        ]
        assert kinds(invariants.lease_violations(log)) == ["fenced-result-accepted"]

    def test_a_second_completion_without_a_rerun_is_a_double_completion(self) -> None:
        log = [
            planned("lint"),
            granted("lint", "l1", 1),
            completed("lint", "l1", 1),
            granted("lint", "l2", 2),
            completed("lint", "l2", 2),
        ]
        assert kinds(invariants.lease_violations(log)) == ["double-completion"]

    def test_a_rerun_after_a_revision_may_complete_again(self) -> None:
        rerun = ev.ChangeRevised(ev.ReviseReason.HEAD_MOVED, 1, MOVED, (), (), (f"{CHANGE}/lint",))
        log = [
            planned("lint"),
            granted("lint", "l1", 1),
            completed("lint", "l1", 1),
            decision(rerun),
            granted("lint", "l2", 2),
            completed("lint", "l2", 2, state=MOVED),
        ]
        assert invariants.lease_violations(log) == []

    def test_a_redelivered_completion_is_not_a_second_completion(self) -> None:
        done = completed("lint", "l1", 1)
        log = [planned("lint"), granted("lint", "l1", 1), done, done]
        assert invariants.lease_violations(log) == []


class TestUnverifiedPromotions:
    """A promotion names the state every required, non-skipped task verified."""

    def test_the_clean_promotion_is_verified(self) -> None:
        assert invariants.unverified_promotions(CLEAN) == []

    def test_a_task_that_verified_another_head_makes_the_promotion_unverified(self) -> None:
        log = [*CLEAN[:-2], completed("merge", "m2", 2, "agent-b", state=MOVED), promoted()]
        found = invariants.unverified_promotions(log)
        assert kinds(found) == ["unverified-promotion"]
        assert f"{CHANGE}/merge" in found[0].detail

    def test_a_task_that_never_completed_makes_the_promotion_unverified(self) -> None:
        log = [planned("lint", "merge"), granted("lint", "l1", 1), completed("lint", "l1", 1),
               promoted()]  # fmt: skip
        assert "never completed" in invariants.unverified_promotions(log)[0].detail

    def test_a_promotion_of_a_state_other_than_the_changes_is_caught(self) -> None:
        log = [*CLEAN[:-1], promoted(MOVED)]
        assert "unverified-promotion" in kinds(invariants.unverified_promotions(log))

    def test_checks_of_the_old_head_do_not_verify_the_revised_one(self) -> None:
        rerun = ev.ChangeRevised(ev.ReviseReason.HEAD_MOVED, 1, MOVED, (), (), ())
        log = [*CLEAN[:-1], decision(rerun), promoted(MOVED)]
        found = invariants.unverified_promotions(log)
        assert kinds(found) == ["unverified-promotion"] * 2

    def test_a_skipped_task_needs_no_verification(self) -> None:
        log = [*CLEAN[:-1]]
        log.insert(1, decision(ev.TaskSkipped("policy said PASS"), task="approval"))
        plan = planned("lint", "merge", "approval")
        assert invariants.unverified_promotions([plan, *log[1:], promoted()]) == []

    def test_an_artifact_other_than_the_promoted_one_is_caught(self) -> None:
        odd = replace(STATE, artifact_digest="sha256:other")
        log = [*CLEAN[:-2], completed("merge", "m2", 2, "agent-b", state=odd),
               promoted(replace(STATE, artifact_digest="sha256:built"))]  # fmt: skip
        assert kinds(invariants.unverified_promotions(log)) == ["unverified-promotion"]


class TestAuditViolations:
    """Every event id on the topics is in the store exactly once, and nothing else is."""

    def test_a_complete_store_has_no_violation(self) -> None:
        assert invariants.audit_violations({"a", "b"}, ["a", "b"], {"a": 1}) == []

    def test_a_missing_event_is_caught(self) -> None:
        assert kinds(invariants.audit_violations({"a", "b"}, ["a"])) == ["audit-missing"]

    def test_an_event_stored_twice_is_caught(self) -> None:
        assert kinds(invariants.audit_violations({"a"}, ["a", "a"])) == ["audit-duplicate"]

    def test_two_rows_of_one_event_in_the_change_table_are_caught(self) -> None:
        found = invariants.audit_violations({"a"}, ["a"], {"a": 2})
        assert kinds(found) == ["audit-duplicate"]

    def test_a_stored_event_on_no_topic_is_caught(self) -> None:
        assert kinds(invariants.audit_violations({"a"}, ["a", "z"])) == ["audit-unknown"]


class TestReplayViolations:
    """Each difference `replay --verify` reports is a violation."""

    def test_no_difference_no_violation(self) -> None:
        assert invariants.replay_violations({"decisions": 10, "differences": []}) == []

    def test_each_difference_is_a_violation(self) -> None:
        difference = {"repo": REPO, "problem": "state differs", "fields": ["changes"]}
        report = {"differences": [difference]}
        found = invariants.replay_violations(report)
        assert [(v.invariant, v.subject, v.detail) for v in found] == [
            ("replay-differs", REPO, "state differs changes")
        ]


class TestDecisionViolations:
    """The combined check over the decisions log sums the individual ones."""

    def test_the_clean_log_passes_and_a_broken_one_reports_each_problem(self) -> None:
        assert invariants.decision_violations([CHANGE], CLEAN) == []
        broken = [*CLEAN[:-1], granted("merge", "m3", 3), completed("merge", "m1", 1)]
        found = kinds(invariants.decision_violations([CHANGE], broken))
        assert sorted(set(found)) == ["change-lost", "double-completion", "fenced-result-accepted"]
