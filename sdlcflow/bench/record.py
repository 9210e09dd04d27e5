"""What a load run observed, and the figures computed from it (pure: no clock, no I/O).

The sdlcflow run fills a `RunRecord` from the decisions log; the PostgreSQL baseline fills
the same record from its tables; the figures of both come from `figures()`, so they measure
the same thing the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sdlcflow.bench.stats import rate, summarize

TERMINAL_TYPES = ("ChangePromoted", "ChangeBlocked", "ChangeFailed", "ChangeWithdrawn")


@dataclass
class RunRecord:
    """Timestamps in ms on one clock (this machine's wall clock), per change and per task."""

    submitted: dict[str, int] = field(default_factory=dict)  # change -> submit time
    measured: set[str] = field(default_factory=set)  # changes submitted after the warm-up
    templates: dict[str, str] = field(default_factory=dict)  # change -> pipeline template
    lease_waits: list[tuple[str, int]] = field(default_factory=list)  # (change, ready->grant ms)
    grants: list[tuple[str, int]] = field(default_factory=list)  # (change, time)
    denials: list[str] = field(default_factory=list)  # change of each denied request
    completions: list[tuple[str, int]] = field(default_factory=list)  # (change, time)
    retries: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    terminal: dict[str, tuple[str, int]] = field(default_factory=dict)  # change -> (type, time)

    def submit(self, change_id: str, at: int, template: str, *, measured: bool) -> None:
        self.submitted[change_id] = at
        self.templates[change_id] = template
        if measured:
            self.measured.add(change_id)

    def unfinished(self, changes: set[str] | None = None) -> set[str]:
        wanted = self.submitted.keys() if changes is None else changes
        return {c for c in wanted if c not in self.terminal}


def figures(record: RunRecord) -> dict[str, Any]:
    """Throughput and latency of the measured changes, from first submit to last outcome."""
    measured = record.measured
    done = [record.terminal[c] for c in measured if c in record.terminal]
    if not measured or not done:
        return {"measured_changes": len(measured), "finished": 0}
    start = min(record.submitted[c] for c in measured)
    end = max(at for _, at in done)
    window_s = max(end - start, 1) / 1000
    grants = [c for c, _ in record.grants if c in measured]
    denials = [c for c in record.denials if c in measured]
    completions = [c for c, _ in record.completions if c in measured]
    end_to_end = [
        record.terminal[c][1] - record.submitted[c] for c in measured if c in record.terminal
    ]
    waits = [ms for c, ms in record.lease_waits if c in measured]
    requests = len(grants) + len(denials)
    return {
        "measured_changes": len(measured),
        "finished": len(done),
        "unfinished": len(measured) - len(done),
        "outcomes": dict(Counter(kind for kind, _ in done)),
        "window_s": round(window_s, 2),
        "changes_per_s": round(rate(len(done), window_s), 2),
        "tasks_per_s": round(rate(len(completions), window_s), 2),
        "lease_grants_per_s": round(rate(len(grants), window_s), 2),
        "tasks_completed": len(completions),
        "lease_grants": len(grants),
        "lease_denials": len(denials),
        "lease_contention_rate": round(len(denials) / requests, 4) if requests else 0.0,
        "retries": sum(1 for c in record.retries if c in measured),
        "dead_letters": sum(1 for c in record.dead_letters if c in measured),
        "approvals": sum(1 for c in record.approvals if c in measured),
        "enqueue_to_lease_ms": summarize(waits).to_json(),
        "change_end_to_end_ms": summarize(end_to_end).to_json(),
        "clean_change_end_to_end_ms": _clean_end_to_end(record),
    }


def _clean_end_to_end(record: RunRecord) -> dict[str, dict[str, float | int | None]]:
    """End to end per template, of the measured changes promoted with each planned step run
    once (no retry, no review, no dead letter): a template's own length, e.g. the 5-step
    `bench-fan` DAG, apart from the mix's detours."""
    detoured = {*record.retries, *record.approvals, *record.dead_letters}
    times: dict[str, list[int]] = {}
    for change in sorted(record.measured - detoured):
        outcome = record.terminal.get(change)
        if outcome is None or outcome[0] != "ChangePromoted" or change not in record.templates:
            continue
        took = outcome[1] - record.submitted[change]
        times.setdefault(record.templates[change], []).append(took)
    return {name: summarize(values).to_json() for name, values in sorted(times.items())}
