"""Where a decision goes: always `sdlc.coordinator`; task-relevant ones also to the capability's
task topic, so an agent of that capability reads only what concerns it."""

from __future__ import annotations

from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.core.state import RepoState
from sdlcflow.streams.topics import COORDINATOR, task_topic

# What agents (and reviewers, on the approval topic) act on: offers, grants, denials,
# extensions, rejections, expiries, revocations, cancellations, compensation and approvals,
# and every per-task outcome (completed, skipped, returned, retry scheduled, dead-lettered), so
# an agent can follow its tasks to their end on its task topic alone.
TASK_DECISIONS: frozenset[str] = frozenset(
    {
        "TaskOffered",
        "LeaseGranted",
        "LeaseDenied",
        "LeaseExtended",
        "LeaseHeartbeatRejected",
        "LeaseExpired",
        "LeaseRevoked",
        "ResultRejected",
        "LeaseReturned",
        "TaskCompleted",
        "TaskSkipped",
        "RetryScheduled",
        "TaskDeadLettered",
        "TaskCancelled",
        "CompensationRequested",
        "ApprovalRequested",
        "EventRejected",
    }
)


def capability_of(decision: Event, *states: RepoState, cause: Event | None = None) -> str | None:
    """The capability of the task a decision is about, looked up in the given states in turn;
    for the answer to a lease request of a task the states no longer hold (its change closed),
    the capability the request named, so the asking agent hears the refusal at once."""
    payload = decision.payload
    if isinstance(payload, ev.TaskOffered):
        return payload.contract.capability
    envelope = decision.envelope
    if envelope.task_id is None or envelope.change_id is None:
        return None
    for state in states:
        change = state.changes.get(envelope.change_id)
        task = change.tasks.get(envelope.task_id) if change is not None else None
        if task is not None:
            return task.contract.capability
    if (
        cause is not None
        and isinstance(cause.payload, ev.LeaseRequested)
        and envelope.causation_id == cause.event_id
    ):
        return cause.payload.capability
    return None


def topics_for(decision: Event, *states: RepoState, cause: Event | None = None) -> tuple[str, ...]:
    """Every topic a decision is published to, `sdlc.coordinator` first; `cause` is the input
    the decision answers, when there is one."""
    if decision.envelope.type not in TASK_DECISIONS:
        return (COORDINATOR,)
    capability = capability_of(decision, *states, cause=cause)
    if capability is None:
        return (COORDINATOR,)
    return (COORDINATOR, task_topic(capability))
