"""Human approvals: evidence bundles, the pending-approvals read model, signed decisions."""

from sdlcflow.approvals.decisions import (
    DecisionRefused,
    Reviewer,
    ReviewerError,
    check_decidable,
    decision_event,
)
from sdlcflow.approvals.evidence import (
    EvidenceError,
    EvidenceRequest,
    EvidenceStore,
    assemble_evidence,
    environment_snapshot,
    replay_command,
)
from sdlcflow.approvals.service import ApprovalsService, Sent
from sdlcflow.approvals.store import (
    Approval,
    ApprovalStatus,
    ApprovalStore,
    Outcome,
    UnknownApproval,
)
from sdlcflow.approvals.sync import SyncError, SyncReport, sync_approvals

__all__ = [
    "Approval",
    "ApprovalStatus",
    "ApprovalStore",
    "ApprovalsService",
    "DecisionRefused",
    "EvidenceError",
    "EvidenceRequest",
    "EvidenceStore",
    "Outcome",
    "Reviewer",
    "ReviewerError",
    "Sent",
    "SyncError",
    "SyncReport",
    "UnknownApproval",
    "assemble_evidence",
    "check_decidable",
    "decision_event",
    "environment_snapshot",
    "replay_command",
    "sync_approvals",
]
