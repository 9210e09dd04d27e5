"""`sdlcflow audit ...` (the sink and the analyst queries) and `sdlcflow report`."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console

from sdlcflow.audit import metrics, render
from sdlcflow.audit.export import ExportFormat, export
from sdlcflow.audit.model import AuditRow
from sdlcflow.audit.queries import AuditReader
from sdlcflow.audit.sink import DEFAULT_BATCH
from sdlcflow.audit.store import DEFAULT_MAX_IN_FLIGHT, AuditStore, connect, connect_when_up
from sdlcflow.audit.windows import WindowError, parse_instant
from sdlcflow.errors import SdlcflowError
from sdlcflow.observability import logs
from sdlcflow.observability import service as observability
from sdlcflow.observability.collectors import watch_sink
from sdlcflow.settings import Settings
from sdlcflow.streams.wire import event_types

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_UNTIL = click.option(
    "--until", default=None, help="End of the window: a duration ago (1h) or an ISO time; now."
)


def _since(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--since",
        default=default,
        show_default=True,
        help="Start of the window: a duration ago (24h, 7d) or an ISO date/time (UTC).",
    )


def _window(since: str, until: str | None) -> tuple[int, int]:
    now = int(time.time() * 1000)
    try:
        start = parse_instant(since, now)
        end = parse_instant(until, now) if until else now + 1
    except WindowError as exc:
        raise click.BadParameter(str(exc)) from exc
    if end <= start:
        raise click.BadParameter(f"--until ({until}) must be after --since ({since})")
    return start, end


@contextmanager
def _reader() -> Iterator[AuditReader]:
    settings = Settings.from_env()
    try:
        cluster, session = connect(settings)
    except SdlcflowError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield AuditReader(session, settings.keyspace)
    except SdlcflowError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        cluster.shutdown()


def _row_json(row: AuditRow) -> dict[str, Any]:
    return {**row.summary(), **_plain(row.extra), "event": row.document}


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in values.items()}


def _emit_rows(title: str, rows: list[AuditRow], as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps([_row_json(r) for r in rows]).decode())
        return
    console = Console()
    console.print(render.events_table(f"{title} ({len(rows)} events)", rows))


@click.group()
def audit() -> None:
    """The audit store: run the sink, ask who did what, when, to which change; export."""


@audit.command()
@click.option(
    "--bootstrap",
    envvar="SDLCFLOW_KAFKA_BOOTSTRAP",
    default="127.0.0.1:9092",
    show_default=True,
    help="Kafka bootstrap servers [env SDLCFLOW_KAFKA_BOOTSTRAP].",
)
@click.option(
    "--group",
    default="sdlcflow-audit",
    show_default=True,
    envvar="SDLCFLOW_AUDIT_GROUP",
    help="Consumer group; run more sinks in the same group to scale [env SDLCFLOW_AUDIT_GROUP].",
)
@click.option(
    "--batch", default=DEFAULT_BATCH, show_default=True, help="Records per poll and commit."
)
@click.option(
    "--max-in-flight",
    default=DEFAULT_MAX_IN_FLIGHT,
    show_default=True,
    help="Cassandra requests (unlogged batches) in flight.",
)
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    help="Exit after S seconds without records (default: run until Ctrl-C).",
)
@_JSON
@observability.options
def sink(
    bootstrap: str,
    group: str,
    batch: int,
    max_in_flight: int,
    idle_exit: float | None,
    as_json: bool,
    metrics_port: int | None,
    log_format: str,
    log_sample_rate: float,
) -> None:
    """Store every event of every sdlc.* topic in Cassandra, exactly once (Ctrl-C to stop)."""
    from sdlcflow.audit.sink import AuditSink, sink_process_gc

    logs.configure(log_format, level=logging.INFO, success_sample_rate=log_sample_rate)
    settings = Settings.from_env()
    connected = connect_when_up(settings, threading.Event(), timeout_s=None)
    if connected is None:
        return
    cluster, session = connected
    try:
        store = AuditStore(session, settings.keyspace, max_in_flight=max_in_flight)
        with (
            observability.observed(
                "sdlcflow-audit", metrics_port=metrics_port, bootstrap=bootstrap, groups=[group]
            ),
            AuditSink(store, bootstrap=bootstrap, group_id=group, batch_size=batch) as running,
            sink_process_gc(),
        ):
            unwatch = watch_sink(running)
            try:
                stats = running.run(idle_timeout=idle_exit)
            finally:
                unwatch()
    except SdlcflowError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        cluster.shutdown()
    summary = {**dataclasses.asdict(stats), "lag_mean_ms": stats.lag_mean_ms}
    summary.pop("started_at", None)
    click.echo(orjson.dumps(summary).decode() if as_json else f"audit sink stopped: {summary}")


@audit.command()
@click.argument("trace_id")
@_JSON
def trace(trace_id: str, as_json: bool) -> None:
    """The timeline of one trace, with the time between steps and per-task waits."""
    with _reader() as reader:
        rows = reader.by_trace(trace_id)
    steps = metrics.timeline(rows)
    spans = metrics.task_spans(rows)
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "trace_id": trace_id,
                    "steps": [
                        {
                            **_row_json(s.row),
                            "since_previous_ms": s.since_previous_ms,
                            "since_start_ms": s.since_start_ms,
                        }
                        for s in steps
                    ],
                    "tasks": [
                        {**dataclasses.asdict(s), "wait_ms": s.wait_ms, "work_ms": s.work_ms}
                        for s in spans
                    ],
                }
            ).decode()
        )
        return
    console = Console()
    console.print(render.timeline_table(trace_id, steps))
    if spans:
        console.print(render.spans_table(spans))


@audit.command()
@click.argument("change_id")
@_JSON
def change(change_id: str, as_json: bool) -> None:
    """Every event of one change, oldest first."""
    with _reader() as reader:
        rows = reader.by_change(change_id)
    _emit_rows(f"change {change_id}", rows, as_json)


@audit.command()
@click.argument("task_id")
@_JSON
def task(task_id: str, as_json: bool) -> None:
    """Every event of one task (offers, leases, results), oldest first."""
    with _reader() as reader:
        rows = reader.by_task(task_id)
    _emit_rows(f"task {task_id}", rows, as_json)


@audit.command()
@click.argument("repo")
@_since("24h")
@_UNTIL
@_JSON
def repo(repo: str, since: str, until: str | None, as_json: bool) -> None:
    """Everything that happened in one repository in the window."""
    start, end = _window(since, until)
    with _reader() as reader:
        rows = reader.by_repo(repo, start, end)
    _emit_rows(f"repo {repo}", rows, as_json)


@audit.command()
@click.argument("actor_id")
@_since("24h")
@_UNTIL
@_JSON
def agent(actor_id: str, since: str, until: str | None, as_json: bool) -> None:
    """Everything one actor (agent, reviewer, producer, ops) did in the window."""
    start, end = _window(since, until)
    with _reader() as reader:
        rows = reader.by_actor(actor_id, start, end)
    _emit_rows(f"actor {actor_id}", rows, as_json)


@audit.command()
@click.argument("name")
@_since("7d")
@_UNTIL
@_JSON
def policy(name: str, since: str, until: str | None, as_json: bool) -> None:
    """Decisions and mode changes of one policy (`*` = every decision of the bundle)."""
    start, end = _window(since, until)
    with _reader() as reader:
        rows = reader.by_policy(name, start, end)
    if as_json:
        _emit_rows(name, rows, True)
        return
    console = Console()
    console.print(render.events_table(f"policy {name} ({len(rows)} decisions)", rows))


@audit.command(name="export")
@_since("24h")
@_UNTIL
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in ExportFormat]),
    default="jsonl",
    show_default=True,
    help="File format (parquet keeps the Avro bytes binary).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file."
)
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only these event types (repeatable); default every type.",
)
@_JSON
def export_command(
    since: str, until: str | None, fmt: str, out: Path, types: tuple[str, ...], as_json: bool
) -> None:
    """Export every event of the window, time-ordered, to CSV, JSON Lines or Parquet."""
    start, end = _window(since, until)
    wanted = list(types) or sorted(event_types())
    with _reader() as reader:
        written = export(reader.iter_types(wanted, start, end), ExportFormat(fmt), out)
    result = {"out": str(out), "format": fmt, "rows": written, "since_ms": start, "until_ms": end}
    if as_json:
        click.echo(orjson.dumps(result).decode())
    else:
        Console().print(f"exported [bold]{written}[/] events to [cyan]{out}[/] ({fmt})")


@click.command()
@_since("24h")
@_UNTIL
@_JSON
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw the report as a PNG chart to this file.",
)
def report(since: str, until: str | None, as_json: bool, png: Path | None) -> None:
    """Throughput, latency percentiles, contention, policy failures, dead letters, MTTR."""
    start, end = _window(since, until)
    with _reader() as reader:
        rows = reader.by_types(metrics.REPORT_TYPES, start, end)
    result = metrics.build_report(rows, start, end)
    if png is not None:
        render.report_png(result, png)
    if as_json:
        click.echo(orjson.dumps(result.to_json()).decode())
        return
    console = Console()
    render.print_tables(console, render.report_tables(result))
    if png is not None:
        console.print(f"chart written to [cyan]{png}[/]")
