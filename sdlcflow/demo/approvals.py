"""The reviewers' part: each signs the evidence bundle of the exact state, through the same
approvals service the `sdlcflow approve` command uses, and the coordinator counts N of M."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdlcflow.approvals.decisions import Reviewer
from sdlcflow.approvals.evidence import EvidenceStore, default_evidence_root
from sdlcflow.approvals.service import ApprovalsService
from sdlcflow.approvals.store import ApprovalStore
from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.demo.errors import StepFailed
from sdlcflow.demo.watch import Match, of_type
from sdlcflow.errors import SdlcflowError
from sdlcflow.streams.topics import COORDINATOR

if TYPE_CHECKING:
    from sdlcflow.demo.scenario import Play

DECISION_WAIT_S = 30.0


def approvals_service(play: Play) -> ApprovalsService:
    """A private read model that starts where this run started (not at the log's beginning)."""
    store = ApprovalStore(play.stage.root / "approvals.sqlite")
    for position in play.watch.start_positions:
        if position.topic == COORDINATOR and position.offset > 0:
            store.skip(COORDINATOR, position.partition, position.offset - 1)
    evidence = EvidenceStore.at(default_evidence_root(play.stage.data_dir))
    return ApprovalsService(store, evidence, play.stage.bootstrap)


def sign_approvals(play: Play, requested: Event) -> None:
    """Every reviewer needed signs in turn; after each, the coordinator's count is checked."""
    assert isinstance(requested.payload, ev.ApprovalRequested)
    required = requested.payload.required
    reviewers = play.stage.identities.reviewers
    if required > len(reviewers):
        raise StepFailed(
            "approvals", f"{required} approvals required, only {len(reviewers)} reviewers"
        )
    approval_id = requested.envelope.task_id or ""
    service = approvals_service(play)
    for number, holder in enumerate(reviewers[:required], start=1):
        reviewer = Reviewer.load(holder.key_file, holder.credential)
        try:
            service.refresh()
            sent = service.decide(
                approval_id,
                reviewer,
                approve=True,
                comment=f"verified the pinned {number}/{required}: diff, tests, smoke",
                wait_s=DECISION_WAIT_S,
            )
        except SdlcflowError as exc:
            raise StepFailed(
                "approvals", f"{holder.actor_id} could not sign {approval_id}: {exc}"
            ) from exc
        signature = (sent.event.envelope.signature or "")[:24]
        play.evidence(
            f"{holder.actor_id} signed", f"event {sent.event.event_id}, signature {signature}..."
        )
        accepted = play.expect(
            f"ApprovalAccepted {number}/{required}",
            _accepted_from(requested.envelope.change_id or "", holder.actor_id),
            play.log_hint("coordinator")
            + " A rejection shows as EventRejected on sdlc.coordinator.",
            timeout_s=DECISION_WAIT_S,
        )
        assert isinstance(accepted.payload, ev.ApprovalAccepted)
        play.evidence("count", f"{accepted.payload.count} of {accepted.payload.required}")
        if number < required:
            play.never(
                "prod must not be offered with approvals missing",
                of_type("TaskOffered", change_id=requested.envelope.change_id, task_step="prod"),
            )


def _accepted_from(change_id: str, approver: str) -> Match:
    is_accepted = of_type("ApprovalAccepted", change_id=change_id)

    def match(event: Event) -> bool:
        payload = event.payload
        return (
            is_accepted(event)
            and isinstance(payload, ev.ApprovalAccepted)
            and payload.approver == approver
        )

    return match
