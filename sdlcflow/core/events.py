"""The events of sdlcflow as the pure core sees them: one envelope, one payload per event type.

The Avro schemas under `schemas/` are the wire contract; these frozen dataclasses are checked
against them by a test so the two cannot drift.

Two kinds of event exist. *Inputs* come from outside the coordinator (producers, agents,
reviewers, ops, the shell's timer). *Decisions* are what the coordinator emits on
`sdlc.coordinator` and the task topics. The coordinator's state is a fold of its decisions
only, so replaying `sdlc.coordinator` rebuilds it exactly; every accepted input therefore
yields at least one decision that carries what the state needs to remember.

Payloads use only str, int, bool, float, enums, Optional, tuples and small frozen dataclasses,
so every one maps onto an Avro record. Times are milliseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sdlcflow.core.records import fast_init

# --------------------------------------------------------------------------------------------
# Envelope and actors


class ActorKind(StrEnum):
    """Who caused an event; what it may do follows from the kind and its credential's scope."""

    AGENT = "agent"
    HUMAN = "human"
    COORDINATOR = "coordinator"
    PRODUCER = "producer"
    OPS = "ops"


@fast_init
@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str


@fast_init
@dataclass(frozen=True)
class Envelope:
    """Fields every event carries, whatever its type.

    `occurred_at` is milliseconds since the epoch (Avro timestamp-millis); it is supplied by the
    shell, never read from a clock inside the core. `signature` is present where the actor is an
    agent or a human; `credential` is the actor's short-lived scoped token (sdlcflow.identity),
    which the shell verifies before the core sees the event.
    """

    event_id: str
    type: str
    occurred_at: int
    repo: str
    change_id: str | None
    task_id: str | None
    trace_id: str
    causation_id: str | None
    actor: Actor
    schema_version: int = 1
    signature: str | None = None
    credential: str | None = None


@fast_init
@dataclass(frozen=True)
class ActorScope:
    """The verified claims of an actor's credential, filled in by the shell (never on the wire).

    The shell checks signature and expiry; the core checks that what the actor asks for lies
    inside this scope (invariant 8). Paths are glob patterns (`fnmatch` syntax).
    """

    actor_id: str
    kind: ActorKind
    capabilities: tuple[str, ...]
    repos: tuple[str, ...]
    paths: tuple[str, ...]
    environments: tuple[str, ...]
    expires_at: int


# The capability that makes a human a reviewer whose signatures count toward approvals.
REVIEW_CAPABILITY = "approval"


def reviewer_group_capability(group: str) -> str:
    """The capability naming a reviewer group, e.g. `approval:security-leads`: its members may
    approve a task once the task's approval has been escalated to that group."""
    return f"{REVIEW_CAPABILITY}:{group}"


# --------------------------------------------------------------------------------------------
# Value objects shared by payloads


class Authority(StrEnum):
    """Who may carry out a task: an agent, a human reviewer or an operator."""

    AGENT = "agent"
    HUMAN = "human"
    OPS = "ops"


class PolicyDecision(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    REVIEW = "REVIEW"


@fast_init
@dataclass(frozen=True)
class ArtifactRef:
    """One named input or output artifact and its content digest (a git SHA or sha256)."""

    name: str
    sha: str


@fast_init
@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: delay = min(max_ms, base_ms * 2**(attempt-1)) +/- jitter * delay."""

    base_ms: int
    max_ms: int
    jitter: float


@fast_init
@dataclass(frozen=True)
class Outputs:
    """What a task may touch (declared) or did touch (reported): paths, manifest keys, envs."""

    paths: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()


@fast_init
@dataclass(frozen=True)
class VerifiedState:
    """The state tuple a check, policy decision or approval verified (invariant 3).

    An empty field means "not established yet" (e.g. no artifact built). Promotion needs every
    field established and every required verification to name exactly this tuple.
    """

    head_sha: str
    base_sha: str = ""
    lockfile_digest: str = ""
    artifact_digest: str = ""
    policy_revision: str = ""


@fast_init
@dataclass(frozen=True)
class TaskContract:
    """One node of a change's DAG: what must be done, by whom, touching what, within what limits."""

    id: str
    step: str
    capability: str
    needs: tuple[str, ...]
    inputs: tuple[ArtifactRef, ...]
    outputs: Outputs
    preconditions: tuple[str, ...]
    when: str
    timeout_ms: int
    authority: Authority
    approvals_required: int
    max_attempts: int
    backoff: Backoff
    compensation: str | None
    gate: bool = False
    required: bool = True
    # the reviewer group an approval task escalates to when its timeout passes unapproved;
    # empty: the timeout blocks the change straight away
    escalate_to: str = ""


@fast_init
@dataclass(frozen=True)
class ChangeFacts:
    """What the planner's `when:` conditions may ask about a change."""

    kind: str
    paths: tuple[str, ...]
    labels: tuple[str, ...]
    resources: tuple[str, ...]
    environments: tuple[str, ...]


@fast_init
@dataclass(frozen=True)
class PolicyOutcome:
    """A policy step's verdict as reported by the policy agent."""

    decision: PolicyDecision
    enforced: bool
    policy_revision: str
    evidence_digest: str
    reasons: tuple[str, ...] = ()
    required_approvals: int = 0
    # the input document and the bundle's whole decision as JSON ({"input": .., "decision": ..}),
    # so `policy backtest --since` can re-evaluate it from the audit store; "" when not kept
    evaluation: str = ""


# --------------------------------------------------------------------------------------------
# Reasons


class DenyReason(StrEnum):
    UNKNOWN_TASK = "UNKNOWN_TASK"
    NOT_OFFERED = "NOT_OFFERED"
    ALREADY_LEASED = "ALREADY_LEASED"
    TASK_CLOSED = "TASK_CLOSED"
    GATE_NOT_SATISFIED = "GATE_NOT_SATISFIED"
    RESOURCE_BUSY = "RESOURCE_BUSY"
    WRONG_AUTHORITY = "WRONG_AUTHORITY"


class RevokeReason(StrEnum):
    HEAD_MOVED = "HEAD_MOVED"
    BASE_MOVED = "BASE_MOVED"
    CHANGE_CANCELLED = "CHANGE_CANCELLED"
    CHANGE_CLOSED = "CHANGE_CLOSED"
    CONFLICT = "CONFLICT"
    CREDENTIAL_REVOKED = "CREDENTIAL_REVOKED"


class RejectReason(StrEnum):
    """Why a result or heartbeat from a lease holder was not accepted."""

    STALE_EPOCH = "STALE_EPOCH"
    UNKNOWN_LEASE = "UNKNOWN_LEASE"
    NOT_HOLDER = "NOT_HOLDER"
    INPUTS_CHANGED = "INPUTS_CHANGED"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    TASK_CLOSED = "TASK_CLOSED"
    STATE_MISMATCH = "STATE_MISMATCH"
    MISSING_OUTCOME = "MISSING_OUTCOME"
    OUTPUT_NOT_DECLARED = "OUTPUT_NOT_DECLARED"
    PATH_OUT_OF_SCOPE = "PATH_OUT_OF_SCOPE"
    ENVIRONMENT_OUT_OF_SCOPE = "ENVIRONMENT_OUT_OF_SCOPE"


class InputRejection(StrEnum):
    """Why an input event was refused outright (forged, out of scope, stale, malformed)."""

    MISSING_SCOPE = "MISSING_SCOPE"
    SCOPE_EXPIRED = "SCOPE_EXPIRED"
    ACTOR_MISMATCH = "ACTOR_MISMATCH"
    REPO_OUT_OF_SCOPE = "REPO_OUT_OF_SCOPE"
    CAPABILITY_OUT_OF_SCOPE = "CAPABILITY_OUT_OF_SCOPE"
    PATH_OUT_OF_SCOPE = "PATH_OUT_OF_SCOPE"
    ENVIRONMENT_OUT_OF_SCOPE = "ENVIRONMENT_OUT_OF_SCOPE"
    OUTPUT_NOT_DECLARED = "OUTPUT_NOT_DECLARED"
    NOT_A_REVIEWER = "NOT_A_REVIEWER"
    UNKNOWN_CHANGE = "UNKNOWN_CHANGE"
    UNKNOWN_TASK = "UNKNOWN_TASK"
    UNKNOWN_TEMPLATE = "UNKNOWN_TEMPLATE"
    INVALID_PLAN = "INVALID_PLAN"
    CHANGE_CLOSED = "CHANGE_CLOSED"
    STALE_APPROVAL = "STALE_APPROVAL"
    DUPLICATE_APPROVAL = "DUPLICATE_APPROVAL"
    NOT_AWAITING_APPROVAL = "NOT_AWAITING_APPROVAL"
    WRONG_KIND = "WRONG_KIND"
    STALE_LEASE = "STALE_LEASE"
    CREDENTIAL_REVOKED = "CREDENTIAL_REVOKED"


class OfferReason(StrEnum):
    READY = "READY"
    RETRY = "RETRY"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    REVERIFY = "REVERIFY"


class ReviseReason(StrEnum):
    HEAD_MOVED = "HEAD_MOVED"
    BASE_MOVED = "BASE_MOVED"


class Severity(StrEnum):
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


# --------------------------------------------------------------------------------------------
# Input payloads (from producers, agents, reviewers, ops, the timer)


@fast_init
@dataclass(frozen=True)
class ChangeRequested:
    """A producer asks for a change to be carried through a pipeline template.

    A second ChangeRequested for a live change with a new head/base/lockfile is an update.
    """

    kind: str
    template: str
    base_sha: str
    head_sha: str
    lockfile_digest: str
    title: str = ""
    paths: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()


@fast_init
@dataclass(frozen=True)
class ChangeUpdated:
    """The change's head (and with it possibly base and lockfile) moved: re-verify."""

    base_sha: str
    head_sha: str
    lockfile_digest: str
    paths: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()


@fast_init
@dataclass(frozen=True)
class ChangeCancelled:
    reason: str


@fast_init
@dataclass(frozen=True)
class LeaseRequested:
    """An agent asks for the lease on an offered task (task id in the envelope)."""

    capability: str


@fast_init
@dataclass(frozen=True)
class LeaseHeartbeat:
    lease_id: str
    epoch: int


@fast_init
@dataclass(frozen=True)
class LeaseReleased:
    """The holder gives the lease back without a result; the task is offered again."""

    lease_id: str
    epoch: int
    reason: str = ""


@fast_init
@dataclass(frozen=True)
class TaskSucceeded:
    """A holder's result: the inputs it worked on, what it touched and what it verified."""

    lease_id: str
    epoch: int
    inputs: tuple[ArtifactRef, ...]
    touched: Outputs
    artifacts: tuple[ArtifactRef, ...] = ()
    verified: VerifiedState | None = None
    policy: PolicyOutcome | None = None


@fast_init
@dataclass(frozen=True)
class TaskFailed:
    lease_id: str
    epoch: int
    error: str
    retryable: bool = True


@fast_init
@dataclass(frozen=True)
class ApprovalSigned:
    """A reviewer signs the evidence for exactly one verified state (approval task in envelope)."""

    state: VerifiedState
    evidence_digest: str
    comment: str = ""


@fast_init
@dataclass(frozen=True)
class ApprovalRejected:
    """A reviewer says no: the change is blocked."""

    state: VerifiedState
    evidence_digest: str
    comment: str = ""


@fast_init
@dataclass(frozen=True)
class CredentialRevoked:
    """Ops revoked an actor's credential: its live leases are revoked too."""

    actor_id: str
    reason: str = ""


@fast_init
@dataclass(frozen=True)
class PolicyModeChanged:
    """Ops switched a policy between audit and enforce; accepted as a PolicyModeSet decision."""

    policy: str
    enforced: bool
    reason: str = ""


@fast_init
@dataclass(frozen=True)
class Tick:
    """Time passes: the shell's timer emits one per active partition; `now` in the envelope."""

    sequence: int = 0


# --------------------------------------------------------------------------------------------
# Decision payloads (what the coordinator emits)


@fast_init
@dataclass(frozen=True)
class ChangePlanned:
    """A change request expanded into its DAG; carries everything the state needs about it."""

    template: str
    template_digest: str
    facts: ChangeFacts
    state: VerifiedState
    tasks: tuple[TaskContract, ...]
    submitted_by: str
    requested_event_id: str


@fast_init
@dataclass(frozen=True)
class ChangeRevised:
    """The change's inputs moved (new head, or base moved under it): re-run what depends on them."""

    reason: ReviseReason
    revision: int
    state: VerifiedState
    paths: tuple[str, ...]
    resources: tuple[str, ...]
    rerun: tuple[str, ...]
    # the re-planned contracts when the change's paths or resources moved (declared outputs
    # follow the change); empty: the contracts stay, only their inputs follow the new state
    tasks: tuple[TaskContract, ...] = ()


@fast_init
@dataclass(frozen=True)
class ChangeWithdrawn:
    """A cancellation was accepted; the change is closed as cancelled."""

    reason: str
    cancelled_by: str


@fast_init
@dataclass(frozen=True)
class ChangePromoted:
    state: VerifiedState
    environments: tuple[str, ...]


@fast_init
@dataclass(frozen=True)
class ChangeBlocked:
    reason: str
    blocked_by: str


@fast_init
@dataclass(frozen=True)
class ChangeFailed:
    reason: str
    failed_task: str


@fast_init
@dataclass(frozen=True)
class TaskReady:
    step: str
    capability: str


@fast_init
@dataclass(frozen=True)
class TaskOffered:
    """The task may be leased; the next grant gets `epoch`. Published on the capability's topic."""

    contract: TaskContract
    attempt: int
    epoch: int
    reason: OfferReason
    change: ChangeFacts | None = None
    # the repository's policy modes set by ops (policy -> enforced; `*`: every policy), which
    # the policy agent applies over its own defaults; empty: nobody switched a mode
    policy_modes: Mapping[str, bool] = field(default_factory=dict)


# the policy name of a mode switch that applies to every policy
ALL_POLICIES = "*"


@fast_init
@dataclass(frozen=True)
class PolicyModeSet:
    """An ops mode switch accepted for the repository: offers from now on carry the mode."""

    policy: str
    enforced: bool
    reason: str
    set_by: str


@fast_init
@dataclass(frozen=True)
class TaskSkipped:
    reason: str


@fast_init
@dataclass(frozen=True)
class TaskCancelled:
    reason: str


@fast_init
@dataclass(frozen=True)
class LeaseGranted:
    lease_id: str
    holder: str
    epoch: int
    expires_at: int
    attempt: int
    inputs: tuple[ArtifactRef, ...]


@fast_init
@dataclass(frozen=True)
class LeaseDenied:
    holder: str
    reason: DenyReason
    detail: str = ""


@fast_init
@dataclass(frozen=True)
class LeaseExtended:
    """A heartbeat was accepted; the lease now expires later."""

    lease_id: str
    epoch: int
    expires_at: int


@fast_init
@dataclass(frozen=True)
class LeaseHeartbeatRejected:
    lease_id: str
    epoch: int
    holder: str
    reason: RejectReason


@fast_init
@dataclass(frozen=True)
class LeaseReturned:
    """A release was accepted; the lease is over and the task will be offered again."""

    lease_id: str
    epoch: int
    holder: str


@fast_init
@dataclass(frozen=True)
class LeaseExpired:
    lease_id: str
    epoch: int
    holder: str


@fast_init
@dataclass(frozen=True)
class LeaseRevoked:
    lease_id: str
    epoch: int
    holder: str
    reason: RevokeReason


@fast_init
@dataclass(frozen=True)
class TaskCompleted:
    """A result was accepted: outputs bound to the inputs the lease was granted with."""

    lease_id: str
    epoch: int
    holder: str
    attempt: int
    inputs: tuple[ArtifactRef, ...]
    touched: Outputs
    artifacts: tuple[ArtifactRef, ...]
    verified: VerifiedState | None


@fast_init
@dataclass(frozen=True)
class ResultRejected:
    lease_id: str
    epoch: int
    holder: str
    reason: RejectReason
    detail: str = ""


@fast_init
@dataclass(frozen=True)
class RetryScheduled:
    """A failed attempt will be offered again at `due_at` (backoff with deterministic jitter)."""

    lease_id: str
    epoch: int
    attempt: int
    next_attempt: int
    due_at: int
    delay_ms: int
    error: str


@fast_init
@dataclass(frozen=True)
class TaskDeadLettered:
    lease_id: str
    epoch: int
    attempts: int
    error: str


@fast_init
@dataclass(frozen=True)
class EscalationRaised:
    """A human must look: nothing fails silently (invariant 4)."""

    reason: str
    severity: Severity
    subject: str
    # the reviewer group now asked to decide an approval that timed out (empty otherwise)
    group: str = ""


@fast_init
@dataclass(frozen=True)
class PolicyEvaluated:
    decision: PolicyDecision
    enforced: bool
    state: VerifiedState
    evidence_digest: str
    reasons: tuple[str, ...]
    # distinct signed approvals the decision demands before promotion (REVIEW only)
    required_approvals: int = 0


@fast_init
@dataclass(frozen=True)
class ApprovalRequested:
    """Humans must sign the evidence for this state; `required` signatures from reviewers."""

    required: int
    state: VerifiedState
    evidence_digest: str


@fast_init
@dataclass(frozen=True)
class ApprovalAccepted:
    """A reviewer's signature counted toward the N-of-M approval."""

    approver: str
    count: int
    required: int
    state: VerifiedState
    evidence_digest: str


@fast_init
@dataclass(frozen=True)
class ApprovalInvalidated:
    reason: str
    state: VerifiedState
    approvers: tuple[str, ...]


@fast_init
@dataclass(frozen=True)
class ConflictDetected:
    """Two live changes declare overlapping outputs: this one waits for `other_change_id`."""

    other_change_id: str
    overlaps: tuple[str, ...]


@fast_init
@dataclass(frozen=True)
class ResourceLeaseGranted:
    """The change now holds resources (paths, manifest keys, environments) exclusively."""

    resources: tuple[str, ...]


@fast_init
@dataclass(frozen=True)
class ResourceLeaseReleased:
    resources: tuple[str, ...]
    landed: bool


@fast_init
@dataclass(frozen=True)
class CompensationRequested:
    """A stale or revoked holder may have touched things: ask it (or ops) to undo them."""

    lease_id: str
    epoch: int
    holder: str
    compensation: str
    reason: str


@fast_init
@dataclass(frozen=True)
class EventRejected:
    """An input was refused (forged, out of scope, stale, unknown); recorded, never thrown."""

    rejected_event_id: str
    rejected_type: str
    actor_id: str
    reason: InputRejection
    detail: str = ""


# --------------------------------------------------------------------------------------------
# Registry

Payload = (
    ChangeRequested
    | ChangeUpdated
    | ChangeCancelled
    | LeaseRequested
    | LeaseHeartbeat
    | LeaseReleased
    | TaskSucceeded
    | TaskFailed
    | ApprovalSigned
    | ApprovalRejected
    | CredentialRevoked
    | PolicyModeChanged
    | Tick
    | ChangePlanned
    | ChangeRevised
    | ChangeWithdrawn
    | ChangePromoted
    | ChangeBlocked
    | ChangeFailed
    | TaskReady
    | TaskOffered
    | PolicyModeSet
    | TaskSkipped
    | TaskCancelled
    | LeaseGranted
    | LeaseDenied
    | LeaseExtended
    | LeaseHeartbeatRejected
    | LeaseReturned
    | LeaseExpired
    | LeaseRevoked
    | TaskCompleted
    | ResultRejected
    | RetryScheduled
    | TaskDeadLettered
    | EscalationRaised
    | PolicyEvaluated
    | ApprovalRequested
    | ApprovalAccepted
    | ApprovalInvalidated
    | ConflictDetected
    | ResourceLeaseGranted
    | ResourceLeaseReleased
    | CompensationRequested
    | EventRejected
)

INPUT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ChangeRequested,
        ChangeUpdated,
        ChangeCancelled,
        LeaseRequested,
        LeaseHeartbeat,
        LeaseReleased,
        TaskSucceeded,
        TaskFailed,
        ApprovalSigned,
        ApprovalRejected,
        CredentialRevoked,
        PolicyModeChanged,
        Tick,
    )
}

DECISION_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ChangePlanned,
        ChangeRevised,
        ChangeWithdrawn,
        ChangePromoted,
        ChangeBlocked,
        ChangeFailed,
        TaskReady,
        TaskOffered,
        PolicyModeSet,
        TaskSkipped,
        TaskCancelled,
        LeaseGranted,
        LeaseDenied,
        LeaseExtended,
        LeaseHeartbeatRejected,
        LeaseReturned,
        LeaseExpired,
        LeaseRevoked,
        TaskCompleted,
        ResultRejected,
        RetryScheduled,
        TaskDeadLettered,
        EscalationRaised,
        PolicyEvaluated,
        ApprovalRequested,
        ApprovalAccepted,
        ApprovalInvalidated,
        ConflictDetected,
        ResourceLeaseGranted,
        ResourceLeaseReleased,
        CompensationRequested,
        EventRejected,
    )
}

# Every event type: type name (as in Envelope.type) -> payload class.
EVENT_TYPES: dict[str, type] = {**INPUT_TYPES, **DECISION_TYPES}

# Inputs the coordinator accepts only from an actor of these kinds (and with a scope when the
# kind is an agent or a human).
INPUT_ACTOR_KINDS: dict[str, frozenset[ActorKind]] = {
    "ChangeRequested": frozenset({ActorKind.PRODUCER, ActorKind.HUMAN, ActorKind.OPS}),
    "ChangeUpdated": frozenset({ActorKind.PRODUCER, ActorKind.HUMAN, ActorKind.OPS}),
    "ChangeCancelled": frozenset({ActorKind.PRODUCER, ActorKind.HUMAN, ActorKind.OPS}),
    "LeaseRequested": frozenset({ActorKind.AGENT, ActorKind.HUMAN, ActorKind.OPS}),
    "LeaseHeartbeat": frozenset({ActorKind.AGENT, ActorKind.HUMAN, ActorKind.OPS}),
    "LeaseReleased": frozenset({ActorKind.AGENT, ActorKind.HUMAN, ActorKind.OPS}),
    "TaskSucceeded": frozenset({ActorKind.AGENT, ActorKind.HUMAN, ActorKind.OPS}),
    "TaskFailed": frozenset({ActorKind.AGENT, ActorKind.HUMAN, ActorKind.OPS}),
    "ApprovalSigned": frozenset({ActorKind.HUMAN}),
    "ApprovalRejected": frozenset({ActorKind.HUMAN}),
    "CredentialRevoked": frozenset({ActorKind.OPS}),
    "PolicyModeChanged": frozenset({ActorKind.OPS}),
    "Tick": frozenset({ActorKind.COORDINATOR, ActorKind.OPS}),
}


@fast_init
@dataclass(frozen=True)
class Event:
    """An envelope plus its typed payload; `scope` holds the shell's verified claims (not wired)."""

    envelope: Envelope
    payload: Payload
    scope: ActorScope | None = None

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def occurred_at(self) -> int:
        return self.envelope.occurred_at
