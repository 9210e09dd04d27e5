"""From one Kafka record to the audit rows it becomes: pure, no I/O, no clock.

An event becomes one `AuditRecord` (the columns every audit table shares: the full event as
Avro bytes, plus what analysts filter on) and a list of `Placement`s, one per query table it
belongs to, each naming that table's partition key. Its JSON (`render_json`) is made when it
is read, not stored. The same input always
gives the same rows, so writing them again after a redelivery changes nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NamedTuple

import orjson

from sdlcflow.core import events as ev
from sdlcflow.core.events import Envelope, Event, VerifiedState
from sdlcflow.streams.deadletter import MessageDeadLettered
from sdlcflow.streams.topics import COORDINATOR, TASKS_PREFIX

# Policy-decision rows of a bundle-wide decision are also filed under this name, so
# `audit policy '*'` lists every decision whatever policy (if any) a finding named.
ALL_POLICIES = "*"

APPROVAL_TYPES = frozenset(
    {"ApprovalSigned", "ApprovalRejected", "ApprovalAccepted", "ApprovalInvalidated"}
)
POLICY_TYPES = frozenset({"PolicyEvaluated", "PolicyModeChanged", "PolicyModeSet"})
DEAD_LETTER_TYPE = "MessageDeadLettered"


class Origin(NamedTuple):
    """Where a record was read: topic, partition, offset and its Kafka timestamp (ms)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


class AuditRecord(NamedTuple):
    """The columns every audit table shares, for one event.

    The fields up to `avro` are the written common columns in their table order
    (`tables.COMMON_COLUMNS`, `kafka_` prefixes aside).
    """

    event_id: str
    event_type: str
    occurred_at: int  # ms since the epoch: the clustering time of every time-ordered table
    repo: str
    change_id: str | None
    task_id: str | None
    trace_id: str
    causation_id: str | None
    actor_kind: str
    actor_id: str
    outcome: str
    before_sha: str | None
    after_sha: str | None
    topic: str
    partition: int
    offset: int
    avro: bytes
    write_timestamp: int  # µs; USING TIMESTAMP, derived from the event time (see write_time)


class Placement(NamedTuple):
    """One row of one query table: the table and the values of the columns only it has.

    The day and hour buckets are the event's own (see `writes.shared_columns`), not a
    placement's.
    """

    table: str
    extra: tuple[tuple[str, Any], ...] = ()

    def column(self, name: str) -> Any:
        return dict(self.extra)[name]


def event_time(event: Event) -> int:
    """The time an event is filed under (ms).

    A dead letter is filed under the refused message's own timestamp: two consumers (or one
    consumer redelivered after a crash) refusing the same message write the same event id
    with different `occurred_at`s, and must still land on the same rows.
    """
    payload = event.payload
    if isinstance(payload, MessageDeadLettered) and payload.timestamp is not None:
        return payload.timestamp
    return event.occurred_at


def topic_rank(topic: str) -> int:
    """Tie-break when one event is read from several topics: the log of record wins.

    Task topics carry copies of coordinator decisions; the row keeps the coordinator's origin.
    """
    if topic.startswith(TASKS_PREFIX):
        return 0
    return 2 if topic == COORDINATOR else 1


def write_time(event: Event, topic: str) -> int:
    """The Cassandra write timestamp (µs): the event time within what a calendar holds (as its
    buckets: a producer may stamp any 64-bit time, and µs of it overflowed the column, stopping
    the sink at that event), plus a topic rank below 1 ms."""
    return bucket_ms(event_time(event)) * 1000 + topic_rank(topic)


# Buckets of times outside what a calendar can hold (a corrupt producer clock) are clamped, so
# one such event is still stored rather than stopping the sink.
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def bucket_ms(ms: int) -> int:
    """`ms` within what a calendar can hold: the time a bucket (day, hour, month) is taken of."""
    return min(max(ms, 0), _MAX_MS)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(bucket_ms(ms) / 1000, UTC)


def utc_month(ms: int) -> str:
    return _utc(ms).strftime("%Y-%m")


def render_json(event: Event) -> str:
    """The event as JSON: envelope and payload, enums by value, bytes as hex (what analysts
    read; rows written before the sink stopped storing it hold the same text)."""
    return orjson.dumps(
        {"envelope": event.envelope, "payload": event.payload}, default=_json_default
    ).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def shas(payload: Any) -> tuple[str | None, str | None]:
    """(before, after) SHAs an event is about: base and head of the state it names, if any."""
    state = _state_of(payload)
    if state is not None:
        return state.base_sha or None, state.head_sha or None
    base, head = getattr(payload, "base_sha", None), getattr(payload, "head_sha", None)
    if isinstance(head, str):
        return (base or None) if isinstance(base, str) else None, head or None
    inputs = getattr(payload, "inputs", None)
    if isinstance(inputs, tuple) and inputs:
        return inputs[0].sha or None, None
    return None, None


def _state_of(payload: Any) -> VerifiedState | None:
    for name in ("state", "verified"):
        value = getattr(payload, name, None)
        if isinstance(value, VerifiedState):
            return value
    return None


_FIXED_OUTCOMES: dict[type, str] = {
    ev.ChangePlanned: "planned",
    ev.ChangeWithdrawn: "withdrawn",
    ev.ChangePromoted: "promoted",
    ev.ChangeBlocked: "blocked",
    ev.ChangeFailed: "failed",
    ev.TaskCompleted: "completed",
    ev.TaskSucceeded: "succeeded",
    ev.TaskDeadLettered: "dead-lettered",
    ev.TaskSkipped: "skipped",
    ev.TaskCancelled: "cancelled",
    ev.LeaseGranted: "granted",
    ev.LeaseExpired: "expired",
    ev.LeaseReturned: "returned",
    ev.LeaseExtended: "extended",
    ev.ApprovalSigned: "signed",
    ev.ApprovalRejected: "rejected",
    ev.ApprovalAccepted: "accepted",
    ev.ApprovalInvalidated: "invalidated",
    ev.ConflictDetected: "conflict",
    ev.RetryScheduled: "retry",
}


def outcome_of(payload: Any) -> str:
    """A short verdict analysts filter on ("" for events that decide nothing)."""
    fixed = _FIXED_OUTCOMES.get(type(payload))
    if fixed is not None:
        return fixed
    if isinstance(payload, ev.TaskFailed):
        return "failed" if payload.retryable else "failed-final"
    if isinstance(payload, ev.PolicyEvaluated):
        return payload.decision.value
    if isinstance(payload, ev.TaskSucceeded) and payload.policy is not None:
        return payload.policy.decision.value
    if isinstance(payload, ev.PolicyModeChanged):
        return "enforce" if payload.enforced else "audit"
    if isinstance(payload, MessageDeadLettered):
        return payload.reason
    reason = getattr(payload, "reason", None)
    if isinstance(payload, ev.LeaseDenied | ev.LeaseRevoked | ev.ResultRejected):
        return f"{type(payload).__name__.removeprefix('Lease').lower()}:{_text(reason)}"
    if isinstance(payload, ev.LeaseHeartbeatRejected | ev.EventRejected):
        return f"rejected:{_text(reason)}"
    return ""


def _text(value: Any) -> str:
    return value.value if isinstance(value, Enum) else str(value)


def audit_record(event: Event, avro: bytes, origin: Origin) -> AuditRecord:
    """The shared columns of `event`, read as `avro` bytes at `origin`."""
    envelope = event.envelope
    before, after = shas(event.payload)
    return AuditRecord(  # by position: a NamedTuple binds keywords a field at a time
        envelope.event_id,
        envelope.type,
        event_time(event),
        envelope.repo,
        envelope.change_id,
        envelope.task_id,
        envelope.trace_id,
        envelope.causation_id,
        envelope.actor.kind.value,
        envelope.actor.id,
        outcome_of(event.payload),
        before,
        after,
        origin.topic,
        origin.partition,
        origin.offset,
        avro,
        write_time(event, origin.topic),
    )


_BY_ID = Placement("events_by_id")
_BY_TYPE_HOUR = Placement("events_by_type_hour")
_BY_REPO_DAY = Placement("events_by_repo_day")
_BY_ACTOR_DAY = Placement("events_by_actor_day")
_BY_CHANGE = Placement("events_by_change")
_CHANGES_BY_TRACE = Placement("changes_by_trace")
_CHANGES_BY_TASK = Placement("changes_by_task")
_BY_TRACE = Placement("events_by_trace")
_BY_TASK = Placement("events_by_task")


def placements(event: Event) -> list[Placement]:
    """Every query table `event` belongs to, with the columns only that row has (empty keys
    skipped)."""
    envelope = event.envelope
    rows = [_BY_ID, _BY_TYPE_HOUR, *_trace_and_task_rows(envelope)]
    if envelope.repo:
        rows.append(_BY_REPO_DAY)
    if envelope.actor.id:
        rows.append(_BY_ACTOR_DAY)
    payload = event.payload
    if type(payload) in _SPECIAL_PAYLOADS:
        rows += _policy_rows(payload)
        rows += _approval_rows(event)
        if isinstance(payload, MessageDeadLettered):
            rows.append(_dead_letter_row(payload))
    return rows


def _trace_and_task_rows(envelope: Envelope) -> list[Placement]:
    """An event of a change: one row in its change's partition plus the key-only lookups from
    its trace and task to the change (the same for every event of the change, so written once
    per poll). An event without a change: rows in the trace's and the task's own partitions."""
    if envelope.change_id:
        rows = [_BY_CHANGE]
        if envelope.trace_id:
            rows.append(_CHANGES_BY_TRACE)
        if envelope.task_id:
            rows.append(_CHANGES_BY_TASK)
        return rows
    return [_BY_TRACE, _BY_TASK] if envelope.task_id else [_BY_TRACE]


def policy_names(payload: Any) -> tuple[str, ...]:
    """The policies a decision is filed under: `*` plus every policy a reason names.

    Reasons are written `policy: message` by the policy engine; a decision with no findings
    is filed under `*` only.
    """
    if isinstance(payload, ev.PolicyModeChanged | ev.PolicyModeSet):
        return (payload.policy,) if payload.policy else ()
    if not isinstance(payload, ev.PolicyEvaluated):
        return ()
    named = {r.split(":", 1)[0].strip() for r in payload.reasons if ":" in r}
    return (ALL_POLICIES, *sorted(n for n in named if n and n != ALL_POLICIES))


def _policy_rows(payload: Any) -> list[Placement]:
    if isinstance(payload, ev.PolicyEvaluated):
        decision, enforced = payload.decision.value, payload.enforced
        revision, digest = payload.state.policy_revision, payload.evidence_digest
        reasons: tuple[str, ...] = payload.reasons
    elif isinstance(payload, ev.PolicyModeChanged | ev.PolicyModeSet):
        decision, enforced, revision, digest = "", payload.enforced, "", ""
        reasons = (payload.reason,) if payload.reason else ()
    else:
        return []
    return [
        Placement(
            "policy_decisions_by_policy_day",
            (
                ("policy", name),
                ("decision", decision),
                ("enforced", enforced),
                ("policy_revision", revision),
                ("evidence_digest", digest),
                ("reasons", list(reasons)),
            ),
        )
        for name in policy_names(payload)
    ]


def reviewers(event: Event) -> tuple[str, ...]:
    """Who an approval event is about: the signer, the approver counted, or those invalidated."""
    payload = event.payload
    if isinstance(payload, ev.ApprovalSigned | ev.ApprovalRejected):
        return (event.envelope.actor.id,)
    if isinstance(payload, ev.ApprovalAccepted):
        return (payload.approver,)
    if isinstance(payload, ev.ApprovalInvalidated):
        return tuple(sorted(set(payload.approvers)))
    return ()


def _approval_rows(event: Event) -> list[Placement]:
    who = [name for name in reviewers(event) if name]
    if not who:
        return []
    month = utc_month(event_time(event))
    return [
        Placement("approvals_by_reviewer_month", (("reviewer", name), ("month", month)))
        for name in who
    ]


def _dead_letter_row(letter: MessageDeadLettered) -> Placement:
    return Placement(
        "dead_letters_by_day",
        (
            ("reason", letter.reason),
            ("detail", letter.detail),
            ("origin_topic", letter.topic),
            ("origin_partition", letter.partition),
            ("origin_offset", letter.offset),
            ("consumer_group", letter.consumer_group),
        ),
    )


# payload types with rows of their own beyond the envelope's (policy, approval, dead letter)
_SPECIAL_PAYLOADS: frozenset[type] = frozenset(
    {
        ev.PolicyEvaluated,
        ev.PolicyModeChanged,
        ev.PolicyModeSet,
        ev.ApprovalSigned,
        ev.ApprovalRejected,
        ev.ApprovalAccepted,
        ev.ApprovalInvalidated,
        MessageDeadLettered,
    }
)


def payload_fields(payload: Any) -> dict[str, Any]:
    """A payload's top-level fields (for tests and renderers that want them by name)."""
    return {f.name: getattr(payload, f.name) for f in dataclasses.fields(payload)}
