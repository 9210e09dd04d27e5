"""People-facing output of the analyst commands: rich tables, and the report's PNG chart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sdlcflow.audit.metrics import Percentiles, Report, Step, TaskSpan
from sdlcflow.audit.model import AuditRow


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def duration(ms: float | None) -> str:
    """A duration for people: 850ms, 12.3s, 4m05s, 2h10m, 3d4h."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def events_table(title: str, rows: Sequence[AuditRow]) -> Table:
    table = Table(title=title, show_lines=False)
    for name in ("time (UTC)", "type", "outcome", "repo", "task", "actor", "SHA before→after"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(
            stamp(row.occurred_at),
            row.event_type,
            row.outcome,
            row.repo,
            row.task_id or "",
            f"{row.actor_kind}:{row.actor_id}",
            _shas(row),
        )
    return table


def _shas(row: AuditRow) -> str:
    if not row.before_sha and not row.after_sha:
        return ""
    return f"{(row.before_sha or '')[:8]}→{(row.after_sha or '')[:8]}"


def timeline_table(trace_id: str, steps: Sequence[Step]) -> Table:
    table = Table(title=f"trace {trace_id}")
    for name in ("+start", "+prev", "type", "outcome", "task", "actor", "topic"):
        table.add_column(name, overflow="fold")
    for step in steps:
        row = step.row
        table.add_row(
            duration(step.since_start_ms),
            duration(step.since_previous_ms),
            row.event_type,
            row.outcome,
            row.task_id or "",
            f"{row.actor_kind}:{row.actor_id}",
            f"{row.topic}[{row.partition}]@{row.offset}",
        )
    return table


def spans_table(spans: Sequence[TaskSpan]) -> Table:
    table = Table(title="tasks")
    for name in ("task", "outcome", "attempts", "offer→lease", "lease→end"):
        table.add_column(name)
    for span in spans:
        table.add_row(
            span.task_id,
            span.outcome or "open",
            str(span.attempts),
            duration(span.wait_ms),
            duration(span.work_ms),
        )
    return table


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _latency(name: str, p: Percentiles) -> tuple[str, str, str, str, str]:
    return (name, str(p.count), duration(p.p50), duration(p.p95), duration(p.p99))


def report_tables(report: Report) -> list[Table]:
    window = Table(title=f"sdlcflow report {stamp(report.since_ms)} → {stamp(report.until_ms)}")
    window.add_column("measure")
    window.add_column("value", justify="right")
    for label, value in (
        ("tasks completed", str(report.tasks_completed)),
        ("throughput (tasks/h)", f"{report.throughput_per_hour:.2f}"),
        ("lease contention", f"{_rate(report.lease_contention_rate)} of {report.lease_requests}"),
        ("policy failures", f"{_rate(report.policy_failure_rate)} of {report.policy_evaluations}"),
        ("dead letters", str(report.dead_letters)),
        ("tasks dead-lettered", str(report.tasks_dead_lettered)),
        (
            "agent-caused failures (recovered)",
            f"{report.agent_failures} ({report.agent_failures_recovered})",
        ),
        ("MTTR of agent-caused failures", duration(report.mttr_ms)),
        ("changes closed", ", ".join(f"{k}={v}" for k, v in sorted(report.changes_closed.items()))),
    ):
        window.add_row(label, value)
    latency = Table(title="latency")
    for name in ("path", "n", "p50", "p95", "p99"):
        latency.add_column(name, justify="right" if name != "path" else "left")
    latency.add_row(*_latency("enqueue → lease", report.enqueue_to_lease_ms))
    latency.add_row(*_latency("lease → completion", report.lease_to_completion_ms))
    latency.add_row(*_latency("change end to end", report.change_end_to_end_ms))
    return [window, latency]


def print_tables(console: Console, tables: Sequence[Table]) -> None:
    for table in tables:
        console.print(table)


def report_png(report: Report, out: Path) -> None:
    """Throughput per hour and latency percentiles, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    hours = [datetime.fromtimestamp(ms / 1000, UTC) for ms, _ in report.throughput_series]
    left.bar(hours, [n for _, n in report.throughput_series], width=1 / 30, color="#3b7dd8")
    left.set_title("tasks completed per hour")
    left.tick_params(axis="x", labelrotation=30)
    paths = [
        ("enqueue→lease", report.enqueue_to_lease_ms),
        ("lease→completion", report.lease_to_completion_ms),
        ("change end to end", report.change_end_to_end_ms),
    ]
    width = 0.25
    for i, (label, attr) in enumerate((("p50", "p50"), ("p95", "p95"), ("p99", "p99"))):
        values = [(getattr(p, attr) or 0) / 1000 for _, p in paths]
        right.bar([x + i * width for x in range(len(paths))], values, width, label=label)
    right.set_xticks([x + width for x in range(len(paths))], [name for name, _ in paths])
    right.set_ylabel("seconds")
    right.set_title("latency percentiles")
    right.legend()
    figure.suptitle(
        f"lease contention {_rate(report.lease_contention_rate)} · policy failures "
        f"{_rate(report.policy_failure_rate)} · dead letters {report.dead_letters} · "
        f"MTTR {duration(report.mttr_ms)}"
    )
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
