"""The invariants a chaos run must keep, checked from the outside on what the run left behind.

Every check is a pure function over evidence read back after the run (the coordinator's
decisions log, the event ids found on the topics and in the audit store, the replay report),
returning the violations it found; an empty list means the invariant held. They never look at
the coordinator's own tables or code paths, so a bug there cannot hide itself.

Decisions are taken in log order per repository (topics are keyed by repository); the same
decision delivered twice (a restarted worker republishing its outbox) carries the same event
id and is counted once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdlcflow.core import events as ev
from sdlcflow.core.events import Event, VerifiedState

CLOSING = (ev.ChangePromoted, ev.ChangeBlocked, ev.ChangeFailed, ev.ChangeWithdrawn)
# decisions after which a task holds no lease any more (the core's appliers agree)
LEASE_ENDING = (
    ev.LeaseReturned,
    ev.LeaseExpired,
    ev.LeaseRevoked,
    ev.TaskCompleted,
    ev.RetryScheduled,
    ev.TaskDeadLettered,
    ev.TaskCancelled,
    ev.TaskSkipped,
)


@dataclass(frozen=True)
class Violation:
    """One broken invariant, with what it concerns and the evidence that shows it."""

    invariant: str
    subject: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"invariant": self.invariant, "subject": self.subject, "detail": self.detail}


def distinct(decisions: Iterable[Event]) -> list[Event]:
    """The decisions in order, each event id once (redeliveries repeat an id, not a decision)."""
    seen: set[str] = set()
    unique: list[Event] = []
    for event in decisions:
        if event.event_id not in seen:
            seen.add(event.event_id)
            unique.append(event)
    return unique


def by_repo(decisions: Iterable[Event]) -> dict[str, list[Event]]:
    """Distinct decisions grouped per repository, each group in log order."""
    groups: dict[str, list[Event]] = defaultdict(list)
    for event in distinct(decisions):
        groups[event.envelope.repo].append(event)
    return dict(groups)


# --------------------------------------------------------------------------------------------
# changes


def lost_changes(submitted: Iterable[str], decisions: Iterable[Event]) -> list[Violation]:
    """Every submitted change reached a terminal outcome (promoted, blocked, failed, withdrawn)."""
    closed = {e.envelope.change_id for e in decisions if isinstance(e.payload, CLOSING)}
    return [
        Violation("change-lost", change_id, "no terminal outcome on the decisions log")
        for change_id in sorted(set(submitted) - closed)
    ]


def double_closings(decisions: Iterable[Event]) -> list[Violation]:
    """A change is closed once: two distinct closing decisions mean two outcomes for one change."""
    closings = Counter(
        e.envelope.change_id for e in distinct(decisions) if isinstance(e.payload, CLOSING)
    )
    return [
        Violation("change-closed-twice", change_id or "", f"{count} closing decisions")
        for change_id, count in sorted(closings.items(), key=lambda item: str(item[0]))
        if count > 1
    ]


# --------------------------------------------------------------------------------------------
# tasks and leases


@dataclass
class _TaskTrack:
    """What the log says about one task so far: its live lease, ended leases, completion."""

    live: ev.LeaseGranted | None = None
    ended: set[str] | None = None
    completed: bool = False

    def end(self) -> None:
        if self.live is not None:
            self.ended_leases().add(self.live.lease_id)
        self.live = None

    def ended_leases(self) -> set[str]:
        if self.ended is None:
            self.ended = set()
        return self.ended


def lease_violations(decisions: Iterable[Event]) -> list[Violation]:
    """Leases and completions per task, read in log order:

    - overlapping-lease: a grant while another lease of the task is still live;
    - fenced-result-accepted: a completion that does not carry the task's live lease (its
      lease expired, was revoked or returned, or a newer epoch holds the task);
    - double-completion: a task completed again without being re-run by a revision.
    """
    violations: list[Violation] = []
    for events in by_repo(decisions).values():
        tracks: dict[str, _TaskTrack] = defaultdict(_TaskTrack)
        for event in events:
            violations += _track(tracks, event)
    return violations


def _track(tracks: dict[str, _TaskTrack], event: Event) -> list[Violation]:
    payload, task_id = event.payload, event.envelope.task_id or ""
    if isinstance(payload, ev.ChangeRevised):
        for rerun in payload.rerun:
            tracks[rerun].end()
            tracks[rerun].completed = False
        return []
    if isinstance(payload, CLOSING):
        prefix = f"{event.envelope.change_id}/"
        for tracked_id, track in tracks.items():
            if tracked_id.startswith(prefix):
                track.end()
        return []
    track = tracks[task_id]
    if isinstance(payload, ev.LeaseGranted):
        found = []
        if track.live is not None:
            found.append(
                Violation(
                    "overlapping-lease",
                    task_id,
                    f"lease {payload.lease_id} (epoch {payload.epoch}, {payload.holder}) granted "
                    f"while {track.live.lease_id} (epoch {track.live.epoch}, "
                    f"{track.live.holder}) was live",
                )
            )
        track.live = payload
        return found
    if isinstance(payload, ev.TaskCompleted):
        found = _completion_problems(track, task_id, payload)
        track.end()
        track.completed = True
        return found
    if isinstance(payload, LEASE_ENDING):
        track.end()
    return []


def _completion_problems(
    track: _TaskTrack, task_id: str, done: ev.TaskCompleted
) -> list[Violation]:
    found = []
    live = track.live
    if live is None or (live.lease_id, live.epoch, live.holder) != (
        done.lease_id,
        done.epoch,
        done.holder,
    ):
        why = (
            "its lease had already ended"
            if done.lease_id in track.ended_leases()
            else f"the live lease was {live.lease_id if live else 'none'}"
        )
        found.append(
            Violation(
                "fenced-result-accepted",
                task_id,
                f"completion by {done.holder} with lease {done.lease_id} epoch {done.epoch}: {why}",
            )
        )
    if track.completed:
        found.append(Violation("double-completion", task_id, f"completed again by {done.holder}"))
    return found


# --------------------------------------------------------------------------------------------
# promotions


@dataclass
class _ChangeTrack:
    """A change's current state and tasks, and what each task verified since its last re-run."""

    state: VerifiedState
    tasks: dict[str, ev.TaskContract]
    verified: dict[str, VerifiedState | None]
    skipped: set[str]


def unverified_promotions(decisions: Iterable[Event]) -> list[Violation]:
    """A promoted change's state is the one every required, non-skipped task verified since it
    last ran (invariant 3): head, base and lockfile equal, any artifact or policy revision the
    task reported equal to the promoted one."""
    violations: list[Violation] = []
    for events in by_repo(decisions).values():
        changes: dict[str, _ChangeTrack] = {}
        for event in events:
            violations += _follow_change(changes, event)
    return violations


def _follow_change(changes: dict[str, _ChangeTrack], event: Event) -> list[Violation]:
    payload, change_id = event.payload, event.envelope.change_id or ""
    task_id = event.envelope.task_id or ""
    if isinstance(payload, ev.ChangePlanned):
        tasks = {contract.id: contract for contract in payload.tasks}
        changes[change_id] = _ChangeTrack(payload.state, tasks, {}, set())
        return []
    change = changes.get(change_id)
    if change is None:
        return []
    if isinstance(payload, ev.ChangeRevised):
        change.state = payload.state
        change.tasks.update({contract.id: contract for contract in payload.tasks})
        for rerun in payload.rerun:
            change.verified.pop(rerun, None)
            change.skipped.discard(rerun)
    elif isinstance(payload, ev.TaskCompleted):
        change.verified[task_id] = payload.verified
    elif isinstance(payload, ev.TaskSkipped):
        change.skipped.add(task_id)
    elif isinstance(payload, ev.ChangePromoted):
        return _promotion_problems(change_id, change, payload.state)
    return []


def _promotion_problems(
    change_id: str, change: _ChangeTrack, promoted: VerifiedState
) -> list[Violation]:
    found = []
    current = change.state
    if (promoted.head_sha, promoted.base_sha, promoted.lockfile_digest) != (
        current.head_sha,
        current.base_sha,
        current.lockfile_digest,
    ):
        found.append(
            Violation(
                "unverified-promotion",
                change_id,
                f"promoted {promoted.head_sha} but the change is at {current.head_sha}",
            )
        )
    for task_id, contract in sorted(change.tasks.items()):
        if not contract.required or task_id in change.skipped:
            continue
        if task_id not in change.verified:
            found.append(Violation("unverified-promotion", change_id, f"{task_id} never completed"))
            continue
        verified = change.verified[task_id]
        if verified is None or not _covers(verified, promoted):
            head = verified.head_sha if verified else "nothing"
            found.append(
                Violation(
                    "unverified-promotion",
                    change_id,
                    f"{task_id} verified {head}, promoted {promoted.head_sha}",
                )
            )
    return found


def _covers(verified: VerifiedState, promoted: VerifiedState) -> bool:
    return (
        verified.head_sha == promoted.head_sha
        and verified.base_sha == promoted.base_sha
        and verified.lockfile_digest == promoted.lockfile_digest
        and verified.artifact_digest in ("", promoted.artifact_digest)
        and verified.policy_revision in ("", promoted.policy_revision)
    )


# --------------------------------------------------------------------------------------------
# audit and replay


def audit_violations(
    on_topics: Iterable[str],
    stored: Sequence[str],
    change_rows: Mapping[str, int] | None = None,
) -> list[Violation]:
    """Every event id found on the audited topics is in the audit store exactly once.

    `stored` lists the event ids read from the store's by-id table; `change_rows` counts the
    rows per event id in the by-change table (where an event has a change), so an event stored
    twice under different keys is caught too.
    """
    expected = set(on_topics)
    counts = Counter(stored)
    violations = [
        Violation("audit-missing", event_id, "on the topics, not in the audit store")
        for event_id in sorted(expected - set(counts))
    ]
    violations += [
        Violation("audit-duplicate", event_id, f"stored {count} times")
        for event_id, count in sorted(counts.items())
        if count > 1
    ]
    violations += [
        Violation("audit-unknown", event_id, "in the audit store, on no topic")
        for event_id in sorted(set(counts) - expected)
    ]
    violations += [
        Violation("audit-duplicate", event_id, f"{count} rows in events_by_change")
        for event_id, count in sorted((change_rows or {}).items())
        if count > 1
    ]
    return violations


def replay_violations(report: Mapping[str, Any]) -> list[Violation]:
    """`sdlcflow replay --verify --json`: every difference between the log's fold and the
    live table is a violation of invariant 5."""
    differences = report.get("differences") or []
    return [
        Violation(
            "replay-differs",
            str(difference.get("repo", "")),
            f"{difference.get('problem', '')} {', '.join(difference.get('fields') or [])}".strip(),
        )
        for difference in differences
    ]


def decision_violations(submitted: Iterable[str], decisions: Sequence[Event]) -> list[Violation]:
    """Every check that needs only the decisions log and the list of submitted changes."""
    return (
        lost_changes(submitted, decisions)
        + double_closings(decisions)
        + lease_violations(decisions)
        + unverified_promotions(decisions)
    )
