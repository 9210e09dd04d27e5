"""The approvals read model folds coordinator decisions into pending/decided approvals."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdlcflow.approvals.store import ApprovalStatus, ApprovalStore, UnknownApproval
from sdlcflow.approvals.testing import approval_requested, decision
from sdlcflow.core import events as ev
from sdlcflow.core.events import VerifiedState

REPO = "acme/login"
STATE = VerifiedState(head_sha="h1", base_sha="b1", lockfile_digest="l1")
DIGEST = "sha256:" + "a" * 64
APPROVAL = "chg-1/approval"


@pytest.fixture
def store(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore(tmp_path / "approvals.sqlite")


def _accepted(approver: str, count: int, required: int, cause: str) -> ev.ApprovalAccepted:
    return ev.ApprovalAccepted(approver, count, required, STATE, DIGEST)


class TestApprovalLifecycle:
    """Requested -> pending; enough signatures -> approved; moved state -> invalidated."""

    def test_requested_approval_is_pending_with_its_state_and_evidence(
        self, store: ApprovalStore
    ) -> None:
        store.apply_event(approval_requested(REPO, "chg-1", STATE, DIGEST, required=2))
        (pending,) = store.pending()
        assert (pending.id, pending.repo, pending.change_id) == (APPROVAL, REPO, "chg-1")
        assert (pending.state, pending.evidence_digest, pending.required) == (STATE, DIGEST, 2)
        assert pending.status is ApprovalStatus.PENDING

    def test_signatures_accumulate_until_the_task_completes(self, store: ApprovalStore) -> None:
        store.apply_event(approval_requested(REPO, "chg-1", STATE, DIGEST, required=2))
        for n, who in enumerate(("alice", "bob"), start=1):
            store.apply_event(
                decision(
                    _accepted(who, n, 2, ""),
                    repo=REPO,
                    change_id="chg-1",
                    task_id=APPROVAL,
                    causation_id=f"sent-{who}",
                )
            )
        assert store.get(APPROVAL).approvers == ("alice", "bob")
        assert store.get(APPROVAL).status is ApprovalStatus.PENDING
        completed = ev.TaskCompleted("", 0, "alice,bob", 0, (), ev.Outputs(), (), STATE)
        store.apply_event(decision(completed, repo=REPO, change_id="chg-1", task_id=APPROVAL))
        assert store.get(APPROVAL).status is ApprovalStatus.APPROVED
        assert store.pending() == []
        outcome = store.outcome("sent-bob")
        assert (
            outcome is not None and outcome.accepted and "bob approved (2 of 2)" in outcome.detail
        )

    def test_revised_change_invalidates_and_a_new_request_reopens_with_new_evidence(
        self, store: ApprovalStore
    ) -> None:
        store.apply_event(approval_requested(REPO, "chg-1", STATE, DIGEST))
        revised = ev.ChangeRevised(ev.ReviseReason.HEAD_MOVED, 1, STATE, (), (), ())
        store.apply_event(decision(revised, repo=REPO, change_id="chg-1"))
        assert store.get(APPROVAL).status is ApprovalStatus.INVALIDATED
        assert "HEAD_MOVED" in store.get(APPROVAL).reason
        moved = VerifiedState(head_sha="h2", base_sha="b1")
        store.apply_event(approval_requested(REPO, "chg-1", moved, "sha256:" + "b" * 64))
        again = store.get(APPROVAL)
        assert (again.status, again.state, again.approvers) == (ApprovalStatus.PENDING, moved, ())

    def test_rejection_by_a_reviewer_closes_the_approval_as_rejected(
        self, store: ApprovalStore
    ) -> None:
        store.apply_event(approval_requested(REPO, "chg-1", STATE, DIGEST))
        blocked = ev.ChangeBlocked("approval rejected by carol: tests too thin", "carol")
        store.apply_event(decision(blocked, repo=REPO, change_id="chg-1", causation_id="sent-c"))
        closed = store.get(APPROVAL)
        assert closed.status is ApprovalStatus.REJECTED
        assert closed.reason == "approval rejected by carol: tests too thin"
        outcome = store.outcome("sent-c")
        assert outcome is not None and outcome.accepted and outcome.type == "ChangeBlocked"

    def test_other_changes_are_untouched_when_one_closes(self, store: ApprovalStore) -> None:
        store.apply_event(approval_requested(REPO, "chg-1", STATE, DIGEST))
        store.apply_event(approval_requested(REPO, "chg-2", STATE, DIGEST))
        store.apply_event(decision(ev.ChangeWithdrawn("dup", "bot"), repo=REPO, change_id="chg-1"))
        assert [a.id for a in store.pending()] == ["chg-2/approval"]
        assert store.get(APPROVAL).status is ApprovalStatus.CLOSED


class TestOutcomes:
    """The coordinator's rejection of a reviewer's decision is kept with its reason."""

    def test_event_rejected_for_an_approval_is_recorded_by_the_sent_event_id(
        self, store: ApprovalStore
    ) -> None:
        rejected = ev.EventRejected(
            "sent-1",
            "ApprovalSigned",
            "mallory",
            ev.InputRejection.STALE_APPROVAL,
            "signed h1, change is at h2",
        )
        store.apply_event(decision(rejected, repo=REPO, change_id="chg-1", causation_id="sent-1"))
        outcome = store.outcome("sent-1")
        assert outcome is not None and not outcome.accepted
        assert (outcome.type, outcome.detail) == ("STALE_APPROVAL", "signed h1, change is at h2")

    def test_rejections_of_other_inputs_are_not_recorded(self, store: ApprovalStore) -> None:
        rejected = ev.EventRejected(
            "lease-1", "LeaseRequested", "bot", ev.InputRejection.UNKNOWN_TASK, ""
        )
        store.apply_event(decision(rejected, repo=REPO, change_id="chg-1"))
        assert store.outcome("lease-1") is None


class TestOffsets:
    """Applying the same log positions twice changes nothing (exact catch-up after a crash)."""

    def test_reapplied_offsets_are_skipped(self, store: ApprovalStore) -> None:
        requested = approval_requested(REPO, "chg-1", STATE, DIGEST, required=2)
        accepted = decision(
            _accepted("alice", 1, 2, ""), repo=REPO, change_id="chg-1", task_id=APPROVAL
        )
        batch = [(requested, "t", 0, 0), (accepted, "t", 0, 1)]
        assert store.apply(batch) == 2
        assert store.apply(batch) == 0
        assert store.get(APPROVAL).approvers == ("alice",)
        assert store.offsets("t") == {0: 2}

    def test_unknown_id_names_the_command_that_lists_ids(self, store: ApprovalStore) -> None:
        with pytest.raises(UnknownApproval, match="sdlcflow approvals list"):
            store.get("nope/approval")


class TestEscalationAndTimeout:
    """A timed-out approval shows its escalation group; a final timeout ends it as timed out."""

    def _escalate(self, store: ApprovalStore) -> None:
        store.apply_event(approval_requested(REPO, "chg-1", STATE, DIGEST))
        raised = ev.EscalationRaised(
            "approval not approved within 3600000 ms; escalated to reviewer group leads",
            ev.Severity.WARNING,
            APPROVAL,
            "leads",
        )
        store.apply_event(
            decision(
                raised,
                repo=REPO,
                change_id="chg-1",
                task_id=APPROVAL,
                occurred_at=1_700_003_600_000,
            )
        )

    def test_escalation_names_the_group_and_keeps_the_approval_pending(
        self, store: ApprovalStore
    ) -> None:
        self._escalate(store)
        (pending,) = store.pending()
        assert (pending.escalated_to, pending.escalated_at) == ("leads", 1_700_003_600_000)
        assert pending.to_json()["escalated_to"] == "leads"

    def test_escalations_without_a_group_change_nothing(self, store: ApprovalStore) -> None:
        store.apply_event(approval_requested(REPO, "chg-1", STATE, DIGEST))
        dead = ev.EscalationRaised("lint failed", ev.Severity.CRITICAL, APPROVAL)
        store.apply_event(decision(dead, repo=REPO, change_id="chg-1", task_id=APPROVAL))
        assert store.get(APPROVAL).escalated_to == ""

    def test_final_timeout_ends_the_approval_as_timed_out(self, store: ApprovalStore) -> None:
        self._escalate(store)
        reason = "approval timed out: approval not approved within 3600000 ms after escalation"
        cancelled = ev.TaskCancelled(f"change blocked: {reason}")
        store.apply_event(decision(cancelled, repo=REPO, change_id="chg-1", task_id=APPROVAL))
        store.apply_event(
            decision(ev.ChangeBlocked(reason, APPROVAL), repo=REPO, change_id="chg-1")
        )
        approval = store.get(APPROVAL)
        assert approval.status is ApprovalStatus.TIMED_OUT
        assert "timed out" in approval.reason

    def test_a_file_from_before_escalations_gains_the_columns(self, tmp_path: Path) -> None:
        import sqlite3

        path = tmp_path / "old.sqlite"
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE approvals (id TEXT PRIMARY KEY, repo TEXT NOT NULL, change_id TEXT "
                "NOT NULL, status TEXT NOT NULL, required INTEGER NOT NULL, approvers TEXT NOT "
                "NULL, state TEXT NOT NULL, evidence_digest TEXT NOT NULL, requested_at INTEGER "
                "NOT NULL, requested_event_id TEXT NOT NULL, updated_at INTEGER NOT NULL, "
                "reason TEXT NOT NULL)"
            )
        store = ApprovalStore(path)
        self._escalate(store)
        assert store.get(APPROVAL).escalated_to == "leads"
