"""Signed reviewer decisions pass the coordinator's gate and core; bad ones fail clearly."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from sdlcflow.approvals.decisions import (
    DecisionRefused,
    Reviewer,
    ReviewerError,
    check_decidable,
    decision_event,
    read_credential,
)
from sdlcflow.approvals.evidence import EvidenceStore
from sdlcflow.approvals.store import Approval, ApprovalStatus, ApprovalStore
from sdlcflow.approvals.testing import CoreDriver, issue_reviewer
from sdlcflow.core import events as ev
from sdlcflow.core.decider import handle
from sdlcflow.core.events import ActorKind, Event, VerifiedState
from sdlcflow.identity import KeyPair
from sdlcflow.processors.trust import CredentialGate, Refusal, TrustedIssuers

REPO = "acme/login"

STATE = VerifiedState("h1", "b1", "l1", "a1", "pol-1")


@pytest.fixture
def driver() -> CoreDriver:
    return CoreDriver(REPO)


@pytest.fixture
def approval(driver: CoreDriver, tmp_path: Path, stored: str) -> Approval:
    requested = driver.to_approval("chg-1", STATE, stored)
    store = ApprovalStore(tmp_path / "a.sqlite")
    store.apply_event(requested)
    return store.get("chg-1/approval")


@pytest.fixture
def gate(issuer: KeyPair) -> CredentialGate:
    return CredentialGate(TrustedIssuers.of({issuer.key_id: issuer.public_key}))


def _reviewer(tmp_path: Path, issuer: KeyPair, subject: str = "alice", **kw: object) -> Reviewer:
    files = issue_reviewer(tmp_path / "keys", subject, issuer, **kw)  # type: ignore[arg-type]
    return Reviewer.load(files.key_file, str(files.credential_file))


def _judge(driver: CoreDriver, gate: CredentialGate, event: Event) -> list[Event] | Refusal:
    admitted = gate.admit(event, event.envelope.occurred_at)
    if isinstance(admitted, Refusal):
        return admitted
    driver.state, out = handle(driver.state, admitted, driver.config)
    return list(out)


class TestSignedDecisions:
    """What approve/reject send is accepted by the real credential gate and the real core."""

    def test_approval_counts_and_completes_the_task(
        self,
        tmp_path: Path,
        issuer: KeyPair,
        approval: Approval,
        driver: CoreDriver,
        gate: CredentialGate,
    ) -> None:
        reviewer = _reviewer(tmp_path, issuer)
        event = decision_event(
            approval, reviewer, approve=True, comment="ok", now_ms=driver.now + 5
        )
        out = _judge(driver, gate, event)
        assert not isinstance(out, Refusal), out
        assert [e.type for e in out][:2] == ["ApprovalAccepted", "TaskCompleted"]
        assert out[0].payload == ev.ApprovalAccepted("alice", 1, 1, STATE, approval.evidence_digest)
        assert event.payload.evidence_digest == approval.evidence_digest  # type: ignore[union-attr]

    def test_rejection_blocks_the_change_with_the_reason(
        self,
        tmp_path: Path,
        issuer: KeyPair,
        approval: Approval,
        driver: CoreDriver,
        gate: CredentialGate,
    ) -> None:
        reviewer = _reviewer(tmp_path, issuer)
        event = decision_event(
            approval, reviewer, approve=False, comment="no tests", now_ms=driver.now + 5
        )
        out = _judge(driver, gate, event)
        assert not isinstance(out, Refusal)
        blocked = [e.payload for e in out if isinstance(e.payload, ev.ChangeBlocked)]
        assert blocked and blocked[0].reason == "approval rejected by alice: no tests"

    def test_altered_evidence_digest_breaks_the_signature(
        self,
        tmp_path: Path,
        issuer: KeyPair,
        approval: Approval,
        driver: CoreDriver,
        gate: CredentialGate,
    ) -> None:
        event = decision_event(
            approval, _reviewer(tmp_path, issuer), approve=True, comment="", now_ms=driver.now + 5
        )
        forged = Event(event.envelope, ev.ApprovalSigned(STATE, "sha256:" + "f" * 64, ""))
        refusal = _judge(driver, gate, forged)
        assert isinstance(refusal, Refusal) and refusal.dead_letter_reason == "signature-invalid"

    def test_author_of_the_change_is_not_a_reviewer(
        self,
        tmp_path: Path,
        issuer: KeyPair,
        approval: Approval,
        driver: CoreDriver,
        gate: CredentialGate,
    ) -> None:
        author = _reviewer(tmp_path, issuer, "webhook")
        out = _judge(
            driver,
            gate,
            decision_event(approval, author, approve=True, comment="", now_ms=driver.now + 5),
        )
        assert not isinstance(out, Refusal)
        assert out[0].payload.reason is ev.InputRejection.NOT_A_REVIEWER  # type: ignore[union-attr]

    def test_approval_of_a_moved_state_is_stale(
        self,
        tmp_path: Path,
        issuer: KeyPair,
        approval: Approval,
        driver: CoreDriver,
        gate: CredentialGate,
    ) -> None:
        old = dataclasses.replace(approval, state=dataclasses.replace(STATE, head_sha="h0"))
        out = _judge(
            driver,
            gate,
            decision_event(
                old, _reviewer(tmp_path, issuer), approve=True, comment="", now_ms=driver.now + 5
            ),
        )
        assert not isinstance(out, Refusal)
        assert out[0].payload.reason is ev.InputRejection.STALE_APPROVAL  # type: ignore[union-attr]


class TestReviewerProfile:
    """Key and credential problems are found before anything is sent, with the fix named."""

    def test_missing_key_file_names_the_command_that_makes_one(
        self, tmp_path: Path, issuer: KeyPair
    ) -> None:
        files = issue_reviewer(tmp_path, "alice", issuer)
        with pytest.raises(ReviewerError, match="sdlcflow keys new"):
            Reviewer.load(tmp_path / "nope.key", files.token)

    def test_world_readable_key_file_is_refused(self, tmp_path: Path, issuer: KeyPair) -> None:
        files = issue_reviewer(tmp_path, "alice", issuer)
        os.chmod(files.key_file, 0o644)
        with pytest.raises(ReviewerError, match="chmod 600"):
            Reviewer.load(files.key_file, files.token)

    def test_garbage_key_file_is_refused(self, tmp_path: Path, issuer: KeyPair) -> None:
        files = issue_reviewer(tmp_path, "alice", issuer)
        bad = tmp_path / "bad.key"
        bad.write_text("not a key")
        os.chmod(bad, 0o600)
        with pytest.raises(ReviewerError, match="bad key file"):
            Reviewer.load(bad, files.token)

    def test_agent_credential_cannot_review(self, tmp_path: Path, issuer: KeyPair) -> None:
        files = issue_reviewer(tmp_path, "bot", issuer, kind=ActorKind.AGENT)
        with pytest.raises(ReviewerError, match="human credential"):
            Reviewer.load(files.key_file, files.token)

    def test_credential_bound_to_another_key_is_refused(
        self, tmp_path: Path, issuer: KeyPair
    ) -> None:
        mine = issue_reviewer(tmp_path / "a", "alice", issuer)
        theirs = issue_reviewer(tmp_path / "b", "alice", issuer)
        with pytest.raises(ReviewerError, match="bound to another public key"):
            Reviewer.load(mine.key_file, theirs.token)

    def test_credential_comes_from_the_environment_when_not_given(
        self, tmp_path: Path, issuer: KeyPair, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        files = issue_reviewer(tmp_path, "alice", issuer)
        monkeypatch.setenv("SDLCFLOW_REVIEWER_CREDENTIAL", str(files.credential_file))
        assert read_credential(None) == files.token
        monkeypatch.delenv("SDLCFLOW_REVIEWER_CREDENTIAL")
        with pytest.raises(ReviewerError, match="--credential"):
            read_credential(None)

    def test_credential_without_approval_capability_is_refused_early(
        self, tmp_path: Path, issuer: KeyPair, approval: Approval
    ) -> None:
        reviewer = _reviewer(tmp_path, issuer, capabilities=("lint",))
        with pytest.raises(ReviewerError, match="'approval' capability"):
            reviewer.check(approval, reviewer.claims.issued_at + 1)

    def test_escalation_group_member_may_decide_only_an_escalated_approval(
        self, tmp_path: Path, issuer: KeyPair, approval: Approval
    ) -> None:
        lead = _reviewer(tmp_path, issuer, "lead", capabilities=("approval:leads",))
        with pytest.raises(ReviewerError, match="'approval' capability"):
            lead.check(approval, lead.claims.issued_at + 1)
        escalated = dataclasses.replace(approval, escalated_to="leads")
        lead.check(escalated, lead.claims.issued_at + 1)

    def test_credential_for_other_repos_is_refused_early(
        self, tmp_path: Path, issuer: KeyPair, approval: Approval
    ) -> None:
        reviewer = _reviewer(tmp_path, issuer, repos=("other/*",))
        with pytest.raises(ReviewerError, match="not 'acme/login'"):
            reviewer.check(approval, reviewer.claims.issued_at + 1)

    def test_expired_credential_is_refused_early(
        self, tmp_path: Path, issuer: KeyPair, approval: Approval
    ) -> None:
        reviewer = _reviewer(tmp_path, issuer)
        with pytest.raises(ReviewerError, match="expired"):
            reviewer.check(approval, reviewer.claims.expires_at)


class TestDecidable:
    """Only pending approvals whose evidence can be shown may be decided."""

    def test_decided_approval_is_refused_with_its_status(
        self, approval: Approval, evidence: EvidenceStore
    ) -> None:
        done = dataclasses.replace(
            approval, status=ApprovalStatus.APPROVED, reason="approvals complete"
        )
        with pytest.raises(DecisionRefused, match="already approved: approvals complete"):
            check_decidable(done, evidence)

    def test_missing_evidence_blocks_the_decision(self, approval: Approval, tmp_path: Path) -> None:
        with pytest.raises(DecisionRefused, match="cannot be decided"):
            check_decidable(approval, EvidenceStore.at(tmp_path / "empty"))

    def test_evidence_for_another_head_is_stale(
        self, approval: Approval, evidence: EvidenceStore
    ) -> None:
        with pytest.raises(DecisionRefused, match="stale"):
            check_decidable(approval, evidence)  # STATE.head_sha 'h1' differs from the git head

    def test_overlong_comment_is_refused(
        self, tmp_path: Path, issuer: KeyPair, approval: Approval
    ) -> None:
        with pytest.raises(DecisionRefused, match="keep it to 2000"):
            decision_event(
                approval, _reviewer(tmp_path, issuer), approve=True, comment="x" * 2001, now_ms=1
            )
