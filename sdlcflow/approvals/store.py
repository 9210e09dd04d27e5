"""The approvals read model: every approval task the coordinator asked for, and where it stands.

Built by folding `sdlc.coordinator` decisions into a small SQLite file (one per reviewer
machine, `<data dir>/approvals.sqlite`). The file also keeps the Kafka offsets it has applied,
in the same transaction as the rows, so a catch-up read resumes exactly where it stopped and
applying a decision twice is impossible. Why SQLite and not the audit tables in Cassandra: the
CLI and console must work on a laptop that reaches only Kafka, and a pending list is a
per-reviewer projection, cheap to rebuild from the log by deleting the file.

An approval's id is its task id (`<change id>/<step>`). A status is one of:
pending, approved, rejected, invalidated (the state moved; a new request follows), timed_out
(nobody approved in time, also after escalation), closed. A pending approval whose timeout
passed shows the reviewer group it was escalated to (whose members may now approve).
The outcome of each decision a reviewer sent (accepted, or rejected with the reason) is kept
by the sent event's id, so the CLI and console can say what the coordinator made of it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sdlcflow.core import events as ev
from sdlcflow.core.events import Event, VerifiedState
from sdlcflow.errors import SdlcflowError


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    INVALIDATED = "invalidated"
    TIMED_OUT = "timed_out"
    CLOSED = "closed"


class UnknownApproval(SdlcflowError):
    """No approval task with this id is known to the local read model."""


@dataclass(frozen=True)
class Approval:
    """One approval task as a reviewer sees it."""

    id: str
    repo: str
    change_id: str
    status: ApprovalStatus
    required: int
    approvers: tuple[str, ...]
    state: VerifiedState
    evidence_digest: str
    requested_at: int
    requested_event_id: str
    updated_at: int
    reason: str = ""
    escalated_to: str = ""
    escalated_at: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "repo": self.repo,
            "change_id": self.change_id,
            "status": self.status.value,
            "required": self.required,
            "approvers": list(self.approvers),
            "state": _state_plain(self.state),
            "evidence_digest": self.evidence_digest,
            "requested_at": self.requested_at,
            "requested_event_id": self.requested_event_id,
            "updated_at": self.updated_at,
            "reason": self.reason,
            "escalated_to": self.escalated_to,
            "escalated_at": self.escalated_at,
        }


@dataclass(frozen=True)
class Outcome:
    """What the coordinator decided about one reviewer decision (by the decision's event id)."""

    cause_id: str
    accepted: bool
    type: str
    detail: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY, repo TEXT NOT NULL, change_id TEXT NOT NULL, status TEXT NOT NULL,
    required INTEGER NOT NULL, approvers TEXT NOT NULL, state TEXT NOT NULL,
    evidence_digest TEXT NOT NULL, requested_at INTEGER NOT NULL,
    requested_event_id TEXT NOT NULL, updated_at INTEGER NOT NULL, reason TEXT NOT NULL,
    escalated_to TEXT NOT NULL DEFAULT '', escalated_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS approvals_by_change ON approvals (change_id, status);
CREATE TABLE IF NOT EXISTS outcomes (
    event_id TEXT PRIMARY KEY, cause_id TEXT NOT NULL, accepted INTEGER NOT NULL,
    type TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_by_cause ON outcomes (cause_id);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""

# columns added after the first release: (name, definition), added to older files on open
_ADDED_COLUMNS = (
    ("escalated_to", "TEXT NOT NULL DEFAULT ''"),
    ("escalated_at", "INTEGER NOT NULL DEFAULT 0"),
)
_COLUMNS = (
    "id, repo, change_id, status, required, approvers, state, evidence_digest, requested_at, "
    "requested_event_id, updated_at, reason, escalated_to, escalated_at"
)

# how the core words a change blocked by a reviewer's rejection, and by an approval timeout
REJECTION_MARK = "approval rejected by"
TIMEOUT_MARK = "approval timed out"
_CLOSING = (ev.ChangePromoted, ev.ChangeWithdrawn, ev.ChangeFailed, ev.ChangeBlocked)


def _state_plain(state: VerifiedState) -> dict[str, str]:
    return {
        "head_sha": state.head_sha,
        "base_sha": state.base_sha,
        "lockfile_digest": state.lockfile_digest,
        "artifact_digest": state.artifact_digest,
        "policy_revision": state.policy_revision,
    }


class ApprovalStore:
    """The SQLite read model; safe to open from several threads (one connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as db:
            db.executescript(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(approvals)")}
            for name, definition in _ADDED_COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE approvals ADD COLUMN {name} {definition}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    # ------------------------------------------------------------------ writing

    def apply(self, events: Sequence[tuple[Event, str, int, int]]) -> int:
        """Fold decisions (event, topic, partition, offset) in and advance the offsets, atomically.

        Decisions at offsets already applied are skipped, so a re-read changes nothing.
        Returns how many were applied.
        """
        applied = 0
        with self._tx() as db:
            for event, topic, partition, offset in events:
                if offset < self._next_offset(db, topic, partition):
                    continue
                _fold(db, event)
                db.execute(
                    "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                    "DO UPDATE SET next_offset = excluded.next_offset",
                    (topic, partition, offset + 1),
                )
                applied += 1
        return applied

    @staticmethod
    def _next_offset(db: sqlite3.Connection, topic: str, partition: int) -> int:
        row = db.execute(
            "SELECT next_offset FROM offsets WHERE topic = ? AND partition = ?", (topic, partition)
        ).fetchone()
        return int(row[0]) if row else 0

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """Move past an undecodable record without folding it."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                (topic, partition, offset + 1),
            )

    def apply_event(self, event: Event) -> None:
        """Fold one decision without offsets (tests and in-process producers)."""
        with self._tx() as db:
            _fold(db, event)

    # ------------------------------------------------------------------ reading

    def offsets(self, topic: str) -> dict[int, int]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def pending(self, repo: str | None = None) -> list[Approval]:
        """Approvals waiting for reviewers, oldest first."""
        query = f"SELECT {_COLUMNS} FROM approvals WHERE status = ?"
        args: tuple[str, ...] = (ApprovalStatus.PENDING.value,)
        if repo is not None:
            query += " AND repo = ?"
            args += (repo,)
        with self._tx() as db:
            rows = db.execute(query + " ORDER BY requested_at, id", args).fetchall()
        return [_row_approval(row) for row in rows]

    def get(self, approval_id: str) -> Approval:
        with self._tx() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
        if row is None:
            raise UnknownApproval(
                f"no approval {approval_id!r} is known here; run `sdlcflow approvals list` to "
                "see the ids (they look like '<change id>/approval')"
            )
        return _row_approval(row)

    def outcome(self, cause_id: str) -> Outcome | None:
        """The coordinator's verdict on the decision sent as event `cause_id`, once it is in."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT cause_id, accepted, type, detail FROM outcomes WHERE cause_id = ? "
                "ORDER BY accepted",
                (cause_id,),
            ).fetchall()
        if not rows:
            return None
        cause, accepted, kind, detail = rows[0]  # a rejection, if any, wins
        return Outcome(str(cause), bool(accepted), str(kind), str(detail))


def _row_approval(row: tuple[object, ...]) -> Approval:
    (aid, repo, change, status, required, approvers, state, digest, at, req, upd, reason) = row[:12]
    escalated_to, escalated_at = row[12:14]
    return Approval(
        id=str(aid),
        repo=str(repo),
        change_id=str(change),
        status=ApprovalStatus(str(status)),
        required=int(str(required)),
        approvers=tuple(json.loads(str(approvers))),
        state=VerifiedState(**json.loads(str(state))),
        evidence_digest=str(digest),
        requested_at=int(str(at)),
        requested_event_id=str(req),
        updated_at=int(str(upd)),
        reason=str(reason),
        escalated_to=str(escalated_to),
        escalated_at=int(str(escalated_at)),
    )


# ---------------------------------------------------------------------- folding


def _fold(db: sqlite3.Connection, event: Event) -> None:
    payload = event.payload
    envelope = event.envelope
    if isinstance(payload, ev.ApprovalRequested):
        _requested(db, event, payload)
    elif isinstance(payload, ev.ApprovalAccepted):
        _accepted(db, event, payload)
    elif isinstance(payload, ev.ApprovalInvalidated):
        _set_status(db, envelope.task_id, ApprovalStatus.INVALIDATED, payload.reason, event)
    elif isinstance(payload, ev.TaskCompleted):
        _set_status(db, envelope.task_id, ApprovalStatus.APPROVED, "approvals complete", event)
    elif isinstance(payload, ev.TaskCancelled | ev.TaskSkipped):
        # a reviewer's rejection or a timeout closes the change, which cancels the task first
        _set_status(db, envelope.task_id, _cancelled_status(payload.reason), payload.reason, event)
    elif isinstance(payload, ev.ChangeRevised):
        _close_change(db, event, ApprovalStatus.INVALIDATED, f"change revised: {payload.reason}")
    elif isinstance(payload, _CLOSING):
        _closed(db, event, payload)
    elif isinstance(payload, ev.EscalationRaised) and payload.group:
        _escalated(db, event, payload)
    elif isinstance(payload, ev.EventRejected) and payload.rejected_type.startswith("Approval"):
        _record_outcome(db, event, payload.rejected_event_id, False, payload.reason.value, payload)


def _requested(db: sqlite3.Connection, event: Event, p: ev.ApprovalRequested) -> None:
    envelope = event.envelope
    if envelope.task_id is None or envelope.change_id is None:
        return
    db.execute(
        f"INSERT INTO approvals ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, '', '', 0) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, required = excluded.required, "
        "approvers = '[]', state = excluded.state, evidence_digest = excluded.evidence_digest, "
        "requested_at = excluded.requested_at, requested_event_id = excluded.requested_event_id, "
        "updated_at = excluded.updated_at, reason = '', escalated_to = '', escalated_at = 0",
        (
            envelope.task_id,
            envelope.repo,
            envelope.change_id,
            ApprovalStatus.PENDING.value,
            p.required,
            json.dumps(_state_plain(p.state)),
            p.evidence_digest,
            envelope.occurred_at,
            envelope.event_id,
            envelope.occurred_at,
        ),
    )


def _accepted(db: sqlite3.Connection, event: Event, p: ev.ApprovalAccepted) -> None:
    envelope = event.envelope
    row = db.execute("SELECT approvers FROM approvals WHERE id = ?", (envelope.task_id,)).fetchone()
    if row is not None:
        approvers = list(json.loads(row[0]))
        if p.approver not in approvers:
            approvers.append(p.approver)
        db.execute(
            "UPDATE approvals SET approvers = ?, updated_at = ? WHERE id = ?",
            (json.dumps(approvers), envelope.occurred_at, envelope.task_id),
        )
    detail = f"{p.approver} approved ({p.count} of {p.required})"
    _record_outcome(db, event, envelope.causation_id or "", True, "ApprovalAccepted", detail)


def _cancelled_status(reason: str) -> ApprovalStatus:
    if REJECTION_MARK in reason:
        return ApprovalStatus.REJECTED
    return ApprovalStatus.TIMED_OUT if TIMEOUT_MARK in reason else ApprovalStatus.CLOSED


def _escalated(db: sqlite3.Connection, event: Event, p: ev.EscalationRaised) -> None:
    """The approval timed out once: the escalation group may now approve it too."""
    db.execute(
        "UPDATE approvals SET escalated_to = ?, escalated_at = ?, updated_at = ? "
        "WHERE id = ? AND status = ?",
        (
            p.group,
            event.envelope.occurred_at,
            event.envelope.occurred_at,
            event.envelope.task_id,
            ApprovalStatus.PENDING.value,
        ),
    )


def _closed(db: sqlite3.Connection, event: Event, payload: object) -> None:
    if isinstance(payload, ev.ChangeBlocked) and payload.reason.startswith(TIMEOUT_MARK):
        _close_change(db, event, ApprovalStatus.TIMED_OUT, payload.reason)
        return
    if isinstance(payload, ev.ChangeBlocked):
        rejected = payload.reason.startswith(REJECTION_MARK)
        status = ApprovalStatus.REJECTED if rejected else ApprovalStatus.CLOSED
        _close_change(db, event, status, payload.reason)
        if rejected:
            _record_outcome(
                db, event, event.envelope.causation_id or "", True, "ChangeBlocked", payload.reason
            )
        return
    _close_change(db, event, ApprovalStatus.CLOSED, f"change closed: {event.type}")


def _set_status(
    db: sqlite3.Connection,
    task_id: str | None,
    status: ApprovalStatus,
    reason: str,
    event: Event,
) -> None:
    db.execute(
        "UPDATE approvals SET status = ?, reason = ?, updated_at = ? WHERE id = ? AND status = ?",
        (status.value, reason, event.envelope.occurred_at, task_id, ApprovalStatus.PENDING.value),
    )


def _close_change(
    db: sqlite3.Connection, event: Event, status: ApprovalStatus, reason: str
) -> None:
    db.execute(
        "UPDATE approvals SET status = ?, reason = ?, updated_at = ? "
        "WHERE change_id = ? AND repo = ? AND status = ?",
        (
            status.value,
            reason,
            event.envelope.occurred_at,
            event.envelope.change_id,
            event.envelope.repo,
            ApprovalStatus.PENDING.value,
        ),
    )


def _record_outcome(
    db: sqlite3.Connection,
    event: Event,
    cause_id: str,
    accepted: bool,
    kind: str,
    detail: object,
) -> None:
    if not cause_id:
        return
    text = detail if isinstance(detail, str) else getattr(detail, "detail", "")
    db.execute(
        "INSERT OR IGNORE INTO outcomes VALUES (?, ?, ?, ?, ?)",
        (event.envelope.event_id, cause_id, int(accepted), kind, text),
    )
