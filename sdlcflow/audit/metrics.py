"""Report metrics and trace timelines computed from audit rows: pure, no I/O, no clock.

Everything here takes rows (as read from the audit store) and the window they were read for,
so it is tested with hand-built rows and gives the same answer for the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sdlcflow.audit.model import AuditRow

# Event types the report reads; nothing else is fetched for it.
REPORT_TYPES: tuple[str, ...] = (
    "ChangeRequested",
    "ChangePlanned",
    "ChangePromoted",
    "ChangeBlocked",
    "ChangeFailed",
    "ChangeWithdrawn",
    "TaskOffered",
    "LeaseGranted",
    "LeaseDenied",
    "LeaseExpired",
    "TaskCompleted",
    "TaskFailed",
    "TaskDeadLettered",
    "PolicyEvaluated",
    "MessageDeadLettered",
)
CHANGE_STARTS = frozenset({"ChangeRequested", "ChangePlanned"})
CHANGE_ENDS = frozenset({"ChangePromoted", "ChangeBlocked", "ChangeFailed", "ChangeWithdrawn"})
CONTENTION_REASONS = frozenset({"ALREADY_LEASED", "RESOURCE_BUSY"})
AGENT_KIND = "agent"


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of a set of durations (ms); None when there were none."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "mean": self.mean,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def percentiles(values: Iterable[float]) -> Percentiles:
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered) if ordered else None
    return Percentiles(
        len(ordered),
        percentile(ordered, 50),
        percentile(ordered, 95),
        percentile(ordered, 99),
        mean,
    )


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Report:
    """The operational summary of one window."""

    since_ms: int
    until_ms: int
    tasks_completed: int
    throughput_per_hour: float
    throughput_series: tuple[tuple[int, int], ...]  # (hour start ms, tasks completed)
    enqueue_to_lease_ms: Percentiles
    lease_to_completion_ms: Percentiles
    change_end_to_end_ms: Percentiles
    changes_closed: dict[str, int]
    lease_requests: int
    lease_contended: int
    lease_contention_rate: float | None
    policy_evaluations: int
    policy_failures: int
    policy_failure_rate: float | None
    dead_letters: int
    dead_letters_by_reason: dict[str, int]
    tasks_dead_lettered: int
    agent_failures: int
    agent_failures_recovered: int
    mttr_ms: float | None
    extras: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "tasks_completed": self.tasks_completed,
            "throughput_per_hour": self.throughput_per_hour,
            "throughput_series": [list(p) for p in self.throughput_series],
            "enqueue_to_lease_ms": self.enqueue_to_lease_ms.to_json(),
            "lease_to_completion_ms": self.lease_to_completion_ms.to_json(),
            "change_end_to_end_ms": self.change_end_to_end_ms.to_json(),
            "changes_closed": self.changes_closed,
            "lease_requests": self.lease_requests,
            "lease_contended": self.lease_contended,
            "lease_contention_rate": self.lease_contention_rate,
            "policy_evaluations": self.policy_evaluations,
            "policy_failures": self.policy_failures,
            "policy_failure_rate": self.policy_failure_rate,
            "dead_letters": self.dead_letters,
            "dead_letters_by_reason": self.dead_letters_by_reason,
            "tasks_dead_lettered": self.tasks_dead_lettered,
            "agent_failures": self.agent_failures,
            "agent_failures_recovered": self.agent_failures_recovered,
            "mttr_ms": self.mttr_ms,
        }


def _epoch(row: AuditRow) -> int | None:
    value = row.payload.get("epoch")
    return value if isinstance(value, int) else None


def _pair_durations(rows: Sequence[AuditRow], start_type: str, end_type: str) -> list[float]:
    """Time from the first `start_type` to the first later `end_type` of one (task, epoch)."""
    starts: dict[tuple[str, int | None], int] = {}
    durations: list[float] = []
    ended: set[tuple[str, int | None]] = set()
    for row in rows:
        if not row.task_id:
            continue
        key = (row.task_id, _epoch(row))
        if row.event_type == start_type:
            starts.setdefault(key, row.occurred_at)
        elif row.event_type == end_type and key in starts and key not in ended:
            ended.add(key)
            durations.append(float(row.occurred_at - starts[key]))
    return durations


def _change_durations(rows: Sequence[AuditRow]) -> tuple[list[float], dict[str, int]]:
    started: dict[str, int] = {}
    closed: dict[str, str] = {}
    durations: list[float] = []
    for row in rows:
        change = row.change_id
        if not change:
            continue
        if row.event_type in CHANGE_STARTS:
            started.setdefault(change, row.occurred_at)
        elif row.event_type in CHANGE_ENDS and change not in closed:
            closed[change] = row.event_type
            if change in started:
                durations.append(float(row.occurred_at - started[change]))
    outcomes: dict[str, int] = {}
    for kind in closed.values():
        name = kind.removeprefix("Change").lower()
        outcomes[name] = outcomes.get(name, 0) + 1
    return durations, outcomes


def is_agent_failure(row: AuditRow) -> bool:
    """A failure an agent caused: it reported TaskFailed, or let its lease expire."""
    if row.event_type == "TaskFailed":
        return row.actor_kind == AGENT_KIND
    return row.event_type == "LeaseExpired"


def _mttr(rows: Sequence[AuditRow]) -> tuple[int, int, float | None]:
    """Agent-caused failure incidents, how many recovered, and the mean time to recover.

    An incident opens at a task's first agent failure and closes at its next completion;
    further failures of the same task in between belong to the same incident.
    """
    open_since: dict[str, int] = {}
    incidents = 0
    repairs: list[int] = []
    for row in rows:
        task = row.task_id
        if not task:
            continue
        if is_agent_failure(row):
            if task not in open_since:
                open_since[task] = row.occurred_at
                incidents += 1
        elif row.event_type == "TaskCompleted" and task in open_since:
            repairs.append(row.occurred_at - open_since.pop(task))
    mean = sum(repairs) / len(repairs) if repairs else None
    return incidents, len(repairs), mean


def _series(rows: Sequence[AuditRow], since_ms: int, until_ms: int) -> tuple[tuple[int, int], ...]:
    first, last = since_ms // 3_600_000, max(since_ms, until_ms - 1) // 3_600_000
    counts = {hour: 0 for hour in range(first, last + 1)}
    for row in rows:
        hour = row.occurred_at // 3_600_000
        if row.event_type == "TaskCompleted" and hour in counts:
            counts[hour] += 1
    return tuple((hour * 3_600_000, n) for hour, n in sorted(counts.items()))


def build_report(rows: Iterable[AuditRow], since_ms: int, until_ms: int) -> Report:
    """The report over rows of the window [since, until), in any order."""
    ordered = sorted(rows, key=lambda r: (r.occurred_at, r.event_id))
    in_window = [r for r in ordered if since_ms <= r.occurred_at < until_ms]
    completed = sum(1 for r in in_window if r.event_type == "TaskCompleted")
    hours = max((until_ms - since_ms) / 3_600_000, 1e-9)
    granted = sum(1 for r in in_window if r.event_type == "LeaseGranted")
    denied = [r for r in in_window if r.event_type == "LeaseDenied"]
    contended = sum(1 for r in denied if r.payload.get("reason") in CONTENTION_REASONS)
    policies = [r for r in in_window if r.event_type == "PolicyEvaluated"]
    failed_policies = sum(1 for r in policies if r.payload.get("decision") == "FAIL")
    letters = [r for r in in_window if r.event_type == "MessageDeadLettered"]
    by_reason: dict[str, int] = {}
    for letter in letters:
        by_reason[letter.outcome] = by_reason.get(letter.outcome, 0) + 1
    change_durations, closed = _change_durations(ordered)
    incidents, recovered, mttr = _mttr(in_window)
    return Report(
        since_ms=since_ms,
        until_ms=until_ms,
        tasks_completed=completed,
        throughput_per_hour=completed / hours,
        throughput_series=_series(in_window, since_ms, until_ms),
        enqueue_to_lease_ms=percentiles(_pair_durations(ordered, "TaskOffered", "LeaseGranted")),
        lease_to_completion_ms=percentiles(
            _pair_durations(ordered, "LeaseGranted", "TaskCompleted")
        ),
        change_end_to_end_ms=percentiles(change_durations),
        changes_closed=closed,
        lease_requests=granted + len(denied),
        lease_contended=contended,
        lease_contention_rate=_ratio(contended, granted + len(denied)),
        policy_evaluations=len(policies),
        policy_failures=failed_policies,
        policy_failure_rate=_ratio(failed_policies, len(policies)),
        dead_letters=len(letters),
        dead_letters_by_reason=by_reason,
        tasks_dead_lettered=sum(1 for r in in_window if r.event_type == "TaskDeadLettered"),
        agent_failures=incidents,
        agent_failures_recovered=recovered,
        mttr_ms=mttr,
    )


@dataclass(frozen=True)
class Step:
    """One event of a trace's timeline with the time since the previous event and the start."""

    row: AuditRow
    since_previous_ms: int
    since_start_ms: int


@dataclass(frozen=True)
class TaskSpan:
    """A task's life inside a trace: offered, leased, finished, and the time between."""

    task_id: str
    offered_at: int | None
    leased_at: int | None
    finished_at: int | None
    outcome: str
    attempts: int

    @property
    def wait_ms(self) -> int | None:
        return _gap(self.offered_at, self.leased_at)

    @property
    def work_ms(self) -> int | None:
        return _gap(self.leased_at, self.finished_at)


def _gap(start: int | None, end: int | None) -> int | None:
    return end - start if start is not None and end is not None else None


_TASK_ENDS = {
    "TaskCompleted": "completed",
    "TaskDeadLettered": "dead-lettered",
    "TaskSkipped": "skipped",
    "TaskCancelled": "cancelled",
}


def timeline(rows: Iterable[AuditRow]) -> list[Step]:
    """Events in time order with the durations between consecutive steps."""
    ordered = sorted(rows, key=lambda r: (r.occurred_at, r.event_id))
    if not ordered:
        return []
    start = ordered[0].occurred_at
    steps: list[Step] = []
    previous = start
    for row in ordered:
        steps.append(Step(row, row.occurred_at - previous, row.occurred_at - start))
        previous = row.occurred_at
    return steps


def task_spans(rows: Iterable[AuditRow]) -> list[TaskSpan]:
    """Per task: first offer, last grant, end and outcome, in order of first appearance."""
    spans: dict[str, dict[str, object]] = {}
    for row in sorted(rows, key=lambda r: (r.occurred_at, r.event_id)):
        if not row.task_id:
            continue
        span = spans.setdefault(
            row.task_id, {"offered": None, "leased": None, "finished": None, "outcome": "", "n": 0}
        )
        if row.event_type == "TaskOffered" and span["offered"] is None:
            span["offered"] = row.occurred_at
        elif row.event_type == "LeaseGranted":
            span["leased"] = row.occurred_at
            span["n"] = int(str(span["n"])) + 1
        elif row.event_type in _TASK_ENDS:
            span["finished"] = row.occurred_at
            span["outcome"] = _TASK_ENDS[row.event_type]
    return [
        TaskSpan(
            task,
            _int(s["offered"]),
            _int(s["leased"]),
            _int(s["finished"]),
            str(s["outcome"]),
            int(str(s["n"])),
        )
        for task, s in spans.items()
    ]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
