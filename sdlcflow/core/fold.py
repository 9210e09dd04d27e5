"""`evolve`, the only code that changes a repository's state: the fold of decisions over it.

Replaying `sdlc.coordinator` from the start through `evolve` rebuilds the state exactly
(DESIGN.md, Functional core). Every event type has an applier, including explicit no-ops, so an
unknown event can never be dropped silently.

The fold lives apart from the records it folds over (sdlcflow.core.state) because it is on the
hot path and compiled with mypyc (tools/compile_core.py), while the records must stay plain
Python dataclasses: compiling them would erase the annotations the codec decodes them by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from sdlcflow.core import events as ev
from sdlcflow.core.events import ALL_POLICIES, Event
from sdlcflow.core.records import replace
from sdlcflow.core.records import updated as _updated
from sdlcflow.core.state import (
    CLOSED_MEMORY,
    RECENT_MEMORY,
    ChangeState,
    Lease,
    Outcome,
    RepoState,
    TaskState,
    TaskStatus,
    claim_keys,
    inputs_of,
)

Applier = Callable[[RepoState, Event], RepoState]


def evolve(state: RepoState, event: Event) -> RepoState:
    """Fold one event into the state; inputs change nothing (their decisions carry the effect)."""
    payload_type = type(event.payload)
    new = APPLIERS[payload_type](state, event)
    cause = event.envelope.causation_id
    if cause is None or payload_type in _SELF_IDEMPOTENT:
        return new
    return _remember(state, new, event.envelope, cause)


# Heartbeat answers need no duplicate record: a repeated heartbeat can never extend a lease
# further (its time is unchanged) and one refused stays refused (epochs and lease ids never
# come back), so the commonest input costs no bookkeeping.
_SELF_IDEMPOTENT: Final = frozenset({ev.LeaseExtended, ev.LeaseHeartbeatRejected})


def _remember(before: RepoState, state: RepoState, envelope: ev.Envelope, cause: str) -> RepoState:
    """Record the input a decision answered, so a duplicate of it is recognised (invariant 6):
    with its live change, or repo-wide when it named no change we know. Inputs for closed
    changes need no record: they are refused the same way every time. The watermark moves
    with each recorded input.

    `before` is the state the applier started from: a state and a change the applier built
    afresh are not shared with anyone yet, so the record is written into them instead of
    copying them again."""
    change_id = envelope.change_id
    changes = state.changes
    change = changes.get(change_id) if change_id else None
    at = envelope.occurred_at
    if change is not None and cause in change.processed:
        if at <= state.watermark:
            return state  # later decisions of the same input: already recorded
        return _with_clock(before, state, at, envelope.repo)
    fresh = state is not before and changes is not before.changes
    if change is not None:
        assert change_id is not None
        processed = change.processed | {cause}
        if fresh and change is not before.changes.get(change_id):
            change.__dict__["processed"] = processed
        else:
            change = _updated(change, {"processed": processed})
            if fresh:
                changes[change_id] = change  # type: ignore[index]
            else:
                state = _updated(state, {"changes": {**changes, change_id: change}})
        return _with_clock(before, state, at, envelope.repo)
    if (change_id is not None and change_id in state.closed) or cause in state.recent:
        return _with_clock(before, state, at, envelope.repo)
    recent = {**state.recent, cause: at}
    if len(recent) > RECENT_MEMORY:
        recent = dict(list(recent.items())[-RECENT_MEMORY:])
    if state is before:
        state = _updated(state, {"recent": recent})
    else:
        state.__dict__["recent"] = recent
    return _with_clock(before, state, at, envelope.repo)


def _with_clock(before: RepoState, state: RepoState, at: int, repo: str) -> RepoState:
    """Move the watermark to `at` (never back) and name the repository if it was not yet."""
    clock: dict[str, Any] = {"watermark": at} if at > state.watermark else {}
    if not state.repo:
        clock["repo"] = repo
    if not clock:
        return state
    if state is before:
        return _updated(state, clock)
    state.__dict__.update(clock)
    return state


def _noop(state: RepoState, _event: Event) -> RepoState:
    return state


def _change(state: RepoState, event: Event) -> ChangeState:
    change_id = event.envelope.change_id
    assert change_id is not None, "decisions about a change carry its change_id"
    return state.changes[change_id]


def _put_change(state: RepoState, change: ChangeState) -> RepoState:
    return _updated(state, {"changes": {**state.changes, change.change_id: change}})


def _task_update(event: Event, state: RepoState, updates: Mapping[str, Any]) -> RepoState:
    """The state with one task's fields changed: new task, tasks map, change, changes map and
    state, everything else shared."""
    envelope = event.envelope
    change_id = envelope.change_id
    task_id = envelope.task_id
    assert change_id is not None and task_id is not None, "task decisions carry both ids"
    change = state.changes[change_id]
    return _put_task(state, change, task_id, _updated(change.tasks[task_id], updates))


def _put_task(state: RepoState, change: ChangeState, task_id: str, task: TaskState) -> RepoState:
    """The state with one task of one of its changes replaced."""
    change = _updated(change, {"tasks": {**change.tasks, task_id: task}})
    return _updated(state, {"changes": {**state.changes, change.change_id: change}})


def _change_and_task(state: RepoState, event: Event) -> tuple[ChangeState, str, TaskState]:
    """The change and task a task decision is about (the decision carries both ids)."""
    envelope = event.envelope
    change_id = envelope.change_id
    task_id = envelope.task_id
    assert change_id is not None and task_id is not None, "task decisions carry both ids"
    change = state.changes[change_id]
    return change, task_id, change.tasks[task_id]


def _task(state: RepoState, event: Event) -> TaskState:
    task_id = event.envelope.task_id
    assert task_id is not None
    return _change(state, event).tasks[task_id]


def _apply_planned(state: RepoState, event: Event) -> RepoState:
    p: ev.ChangePlanned = event.payload  # type: ignore[assignment]
    change_id = event.envelope.change_id
    assert change_id is not None
    change = ChangeState(
        change_id=change_id,
        template=p.template,
        template_digest=p.template_digest,
        facts=p.facts,
        state=p.state,
        tasks={task.id: TaskState(contract=task) for task in p.tasks},
        claims=claim_keys(p.facts, p.tasks),
        submitted_by=p.submitted_by,
        updated_at=event.envelope.occurred_at,
    )
    return _put_change(state, change)


def _apply_revised(state: RepoState, event: Event) -> RepoState:
    p: ev.ChangeRevised = event.payload  # type: ignore[assignment]
    change = _change(state, event)
    inputs = inputs_of(p.state)
    replanned = {contract.id: contract for contract in p.tasks}
    tasks = dict(change.tasks)
    for task_id in p.rerun:
        old = tasks[task_id]
        contract = replanned.get(task_id) or replace(old.contract, inputs=inputs)
        tasks[task_id] = TaskState(contract=contract, epoch=old.epoch)
    facts = replace(
        change.facts,
        paths=p.paths or change.facts.paths,
        resources=p.resources or change.facts.resources,
    )
    revised = replace(
        change,
        state=p.state,
        revision=p.revision,
        tasks=tasks,
        facts=facts,
        claims=claim_keys(facts, tuple(task.contract for task in tasks.values())),
        policy_decision="",
        policy_enforced=False,
        evidence_digest="",
        policy_approvals=0,
        **_moved(p, event.envelope.occurred_at),
    )
    return _put_change(state, revised)


def _moved(p: ev.ChangeRevised, at: int) -> dict[str, Any]:
    """What a revision records of why the change moved: the time of the producer's update that
    moved its head, or the landed change's head it now sits on."""
    if p.reason is ev.ReviseReason.HEAD_MOVED:
        return {"updated_at": at}
    return {"landed_base": p.state.base_sha}


def _apply_closed(outcome: Outcome) -> Applier:
    def apply(state: RepoState, event: Event) -> RepoState:
        change_id = event.envelope.change_id
        assert change_id is not None
        changes = {k: v for k, v in state.changes.items() if k != change_id}
        holders = {k: v for k, v in state.holders.items() if v != change_id}
        closed = {**state.closed, change_id: outcome.value}
        if len(closed) > CLOSED_MEMORY:
            closed = dict(list(closed.items())[-CLOSED_MEMORY:])
        return replace(state, changes=changes, holders=holders, closed=closed)

    return apply


def _apply_offered(state: RepoState, event: Event) -> RepoState:
    p: ev.TaskOffered = event.payload  # type: ignore[assignment]
    return _task_update(
        event,
        state,
        {
            "status": TaskStatus.OFFERED,
            "attempt": p.attempt,
            "lease": None,
            "retry_due": None,
            "offered_at": event.envelope.occurred_at,
        },
    )


def _apply_granted(state: RepoState, event: Event) -> RepoState:
    p: ev.LeaseGranted = event.payload  # type: ignore[assignment]
    change, task_id, task = _change_and_task(state, event)
    at = event.envelope.occurred_at
    lease = Lease(
        lease_id=p.lease_id,
        holder=p.holder,
        epoch=p.epoch,
        expires_at=p.expires_at,
        deadline=at + task.contract.timeout_ms,
        attempt=p.attempt,
        inputs=p.inputs,
        granted_at=at,
    )
    leased = _updated(task, {"status": TaskStatus.LEASED, "epoch": p.epoch, "lease": lease})
    return _put_task(state, change, task_id, leased)


def _apply_extended(state: RepoState, event: Event) -> RepoState:
    p: ev.LeaseExtended = event.payload  # type: ignore[assignment]
    change, task_id, task = _change_and_task(state, event)
    lease = task.lease
    assert lease is not None, "LeaseExtended follows a live lease"
    extended = _updated(lease, {"expires_at": p.expires_at})
    return _put_task(state, change, task_id, _updated(task, {"lease": extended}))


def _apply_lease_ended(state: RepoState, event: Event) -> RepoState:
    return _task_update(
        event,
        state,
        {"status": TaskStatus.RETRY_WAIT, "lease": None, "retry_due": event.envelope.occurred_at},
    )


def _apply_retry(state: RepoState, event: Event) -> RepoState:
    p: ev.RetryScheduled = event.payload  # type: ignore[assignment]
    return _task_update(
        event, state, {"status": TaskStatus.RETRY_WAIT, "lease": None, "retry_due": p.due_at}
    )


def _apply_completed(state: RepoState, event: Event) -> RepoState:
    """The task succeeded; an artifact digest or policy revision it verified first becomes
    part of the change's state, which later checks must then match."""
    p: ev.TaskCompleted = event.payload  # type: ignore[assignment]
    change, task_id, task = _change_and_task(state, event)
    verified = p.verified
    done = _updated(
        task,
        {
            "status": TaskStatus.SUCCEEDED,
            "lease": None,
            "retry_due": None,
            "verified": verified,
            "completions": task.completions + 1,
        },
    )
    if verified is not None:
        current = change.state
        artifact = current.artifact_digest or verified.artifact_digest
        revision = current.policy_revision or verified.policy_revision
        if artifact != current.artifact_digest or revision != current.policy_revision:
            merged = _updated(current, {"artifact_digest": artifact, "policy_revision": revision})
            change = _updated(change, {"state": merged})
    return _put_task(state, change, task_id, done)


def _apply_status(status: TaskStatus) -> Applier:
    def apply(state: RepoState, event: Event) -> RepoState:
        return _task_update(event, state, {"status": status, "lease": None, "retry_due": None})

    return apply


def _apply_policy(state: RepoState, event: Event) -> RepoState:
    p: ev.PolicyEvaluated = event.payload  # type: ignore[assignment]
    state = _task_update(event, state, {"decision": p.decision.value})
    change = replace(
        _change(state, event),
        policy_decision=p.decision.value,
        policy_enforced=p.enforced,
        evidence_digest=p.evidence_digest,
        policy_approvals=p.required_approvals,
    )
    return _put_change(state, change)


def _apply_policy_mode(state: RepoState, event: Event) -> RepoState:
    """Last switch wins: one for every policy (`*`) replaces the earlier per-policy ones."""
    p: ev.PolicyModeSet = event.payload  # type: ignore[assignment]
    earlier = {} if p.policy == ALL_POLICIES else state.policy_modes
    return replace(state, policy_modes={**earlier, p.policy: p.enforced})


def _apply_approval_requested(state: RepoState, event: Event) -> RepoState:
    p: ev.ApprovalRequested = event.payload  # type: ignore[assignment]
    return _task_update(
        event,
        state,
        {
            "status": TaskStatus.AWAITING_APPROVAL,
            "evidence_digest": p.evidence_digest,
            "approvers": (),
            "approvals_needed": p.required,
            "requested_at": event.envelope.occurred_at,
            "escalated_to": "",
            "escalated_at": 0,
        },
    )


def _apply_escalation(state: RepoState, event: Event) -> RepoState:
    """An escalation naming a reviewer group hands an awaiting approval task to that group."""
    p: ev.EscalationRaised = event.payload  # type: ignore[assignment]
    if not p.group:
        return state
    return _task_update(
        event, state, {"escalated_to": p.group, "escalated_at": event.envelope.occurred_at}
    )


def _apply_approval_accepted(state: RepoState, event: Event) -> RepoState:
    p: ev.ApprovalAccepted = event.payload  # type: ignore[assignment]
    task = _task(state, event)
    return _task_update(event, state, {"approvers": (*task.approvers, p.approver)})


def _apply_approval_invalidated(state: RepoState, event: Event) -> RepoState:
    return _task_update(event, state, {"approvers": ()})


def _apply_conflict(state: RepoState, event: Event) -> RepoState:
    p: ev.ConflictDetected = event.payload  # type: ignore[assignment]
    change = _change(state, event)
    if p.other_change_id in change.waiting_for:
        return state
    return _put_change(state, replace(change, waiting_for=(*change.waiting_for, p.other_change_id)))


def _apply_resources_granted(state: RepoState, event: Event) -> RepoState:
    p: ev.ResourceLeaseGranted = event.payload  # type: ignore[assignment]
    change = _change(state, event)
    holders = {**state.holders, **dict.fromkeys(p.resources, change.change_id)}
    state = replace(state, holders=holders)
    return _put_change(state, replace(change, holds=True, waiting_for=()))


def _apply_resources_released(state: RepoState, event: Event) -> RepoState:
    change = _change(state, event)
    holders = {k: v for k, v in state.holders.items() if v != change.change_id}
    return _put_change(replace(state, holders=holders), replace(change, holds=False))


APPLIERS: Final[dict[type, Applier]] = {
    # inputs: their effect arrives through the decisions they cause
    **{cls: _noop for cls in ev.INPUT_TYPES.values()},
    ev.ChangePlanned: _apply_planned,
    ev.ChangeRevised: _apply_revised,
    ev.ChangeWithdrawn: _apply_closed(Outcome.CANCELLED),
    ev.ChangePromoted: _apply_closed(Outcome.PROMOTED),
    ev.ChangeBlocked: _apply_closed(Outcome.BLOCKED),
    ev.ChangeFailed: _apply_closed(Outcome.FAILED),
    ev.TaskReady: _noop,
    ev.TaskOffered: _apply_offered,
    ev.PolicyModeSet: _apply_policy_mode,
    ev.TaskSkipped: _apply_status(TaskStatus.SKIPPED),
    ev.TaskCancelled: _apply_status(TaskStatus.CANCELLED),
    ev.LeaseGranted: _apply_granted,
    ev.LeaseDenied: _noop,
    ev.LeaseExtended: _apply_extended,
    ev.LeaseHeartbeatRejected: _noop,
    ev.LeaseReturned: _apply_lease_ended,
    ev.LeaseExpired: _apply_lease_ended,
    ev.LeaseRevoked: _apply_lease_ended,
    ev.TaskCompleted: _apply_completed,
    ev.ResultRejected: _noop,
    ev.RetryScheduled: _apply_retry,
    ev.TaskDeadLettered: _apply_status(TaskStatus.DEAD),
    ev.EscalationRaised: _apply_escalation,
    ev.PolicyEvaluated: _apply_policy,
    ev.ApprovalRequested: _apply_approval_requested,
    ev.ApprovalAccepted: _apply_approval_accepted,
    ev.ApprovalInvalidated: _apply_approval_invalidated,
    ev.ConflictDetected: _apply_conflict,
    ev.ResourceLeaseGranted: _apply_resources_granted,
    ev.ResourceLeaseReleased: _apply_resources_released,
    ev.CompensationRequested: _noop,
    ev.EventRejected: _noop,
}

__all__ = ["APPLIERS", "Applier", "evolve"]
