"""`sdlcflow up | down | status | migrate`: the local servers on the command line.

Tables and progress go to people; `--json` prints one JSON document on stdout for scripts.
Failures exit 1 with a message that names the log to read or the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.table import Table

from sdlcflow.infra import local
from sdlcflow.infra.errors import InfraError
from sdlcflow.infra.migrations import MigrationReport
from sdlcflow.infra.topics import TopicReport
from sdlcflow.observability.overview import Overview, overview
from sdlcflow.processors.config import DEFAULT_APP_ID
from sdlcflow.settings import Settings

_out = Console()
_err = Console(stderr=True)

_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document for scripts."
)


def _emit_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


@contextmanager
def _infra_errors() -> Iterator[None]:
    """Turn our errors into click's, so the CLI prints the message and exits 1 (no traceback)."""
    try:
        yield
    except InfraError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    """Show each step on stderr (stdout stays clean for --json): a spinner on a terminal,
    one line per step in a log."""
    if not enabled:
        yield lambda _message: None
    elif not _err.is_terminal:
        yield lambda message: _err.print(message, style="dim", highlight=False)
    else:
        with _err.status("starting") as spinner:
            yield lambda message: spinner.update(message)


def _servers_table(servers: list[local.ServerStatus]) -> Table:
    table = Table(title="sdlcflow servers")
    for column in ("server", "address", "mode", "pid", "ready"):
        table.add_column(column, no_wrap=True)
    table.add_column("log", overflow="fold")
    for s in servers:
        table.add_row(
            s.name,
            s.address,
            "local" if s.managed else "given",
            str(s.pid) if s.pid else "-",
            "[green]yes[/green]" if s.ready else "[red]no[/red]",
            str(s.log_path) if s.log_path else "-",
        )
    return table


def _print_topics(topics: TopicReport | None) -> None:
    if topics is None:
        _out.print("topics: unknown (Kafka does not answer)")
        return
    total = len(topics.present) + len(topics.created) + len(topics.missing) + len(topics.mismatched)
    _out.print(
        f"topics: {len(topics.present) + len(topics.created)}/{total} present"
        + (f", created now: {', '.join(topics.created)}" if topics.created else "")
    )
    if topics.missing:
        _out.print(f"[yellow]missing topics:[/yellow] {', '.join(topics.missing)}")
    for m in topics.mismatched:
        _out.print(
            f"[yellow]{m.name} has {m.actual} partitions, the catalog says {m.expected}[/yellow] "
            "(left as is: changing it would reorder repositories)"
        )


def _print_schema(keyspace: str, migrations: MigrationReport | None) -> None:
    if migrations is None:
        _out.print(f"keyspace {keyspace}: unknown (Cassandra does not answer)")
        return
    version = "none" if migrations.version is None else f"{migrations.version:04d}"
    line = f"keyspace {keyspace}: migration {version} of {migrations.latest:04d}"
    if migrations.applied:
        line += f", applied now: {', '.join(f'{v:04d}' for v in migrations.applied)}"
    if migrations.pending:
        line += f" [yellow](pending: {', '.join(f'{v:04d}' for v in migrations.pending)})[/yellow]"
    _out.print(line)
    if migrations.drifted:
        _out.print(
            f"[yellow]migrations changed after they were applied: {list(migrations.drifted)}; "
            "they are not re-run: add a new migration instead[/yellow]"
        )


@click.command()
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=local.DEFAULT_TIMEOUT_S,
    show_default=True,
    envvar="SDLCFLOW_UP_TIMEOUT",
    help="Seconds to wait for the servers to answer (a first jar download is not counted).",
)
@_json_option
def up(timeout_s: float, as_json: bool) -> None:
    """Start local Kafka and Cassandra (unless given by SDLCFLOW_* addresses), wait until they
    answer, create the catalog's topics and apply the schema migrations. Idempotent."""
    settings = Settings.from_env()
    with _infra_errors(), _progress(not as_json) as progress:
        info = local.ensure_up(settings, timeout_s=timeout_s, progress=progress)
    if as_json:
        _emit_json(info.to_json())
        return
    _out.print(_servers_table([info.kafka, info.cassandra]))
    _print_topics(info.topics)
    _print_schema(settings.keyspace, info.migrations)
    started = ", ".join(info.started) if info.started else "nothing (already running or given)"
    _out.print(f"started: {started}; ready in {info.elapsed_s:.1f} s")


@click.command()
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=local.STOP_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
@_json_option
def down(timeout_s: float, as_json: bool) -> None:
    """Stop the local servers `sdlcflow up` started (servers given by address are left alone)."""
    settings = Settings.from_env()
    with _infra_errors():
        stopped = local.stop(settings, timeout_s=timeout_s)
    if as_json:
        _emit_json({"stopped": list(stopped)})
        return
    _out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def _print_overview(view: Overview) -> None:
    table = Table(title="consumer groups")
    for column in ("group", "member", "partitions", "lag by topic"):
        table.add_column(column, overflow="fold")
    for group in view.groups:
        lag = ", ".join(f"{topic} {n}" for topic, n in group.lag_by_topic().items()) or "-"
        members = group.members or ()
        if not members:
            table.add_row(group.group, "[dim]none running[/dim]", "-", lag)
        for number, member in enumerate(members):
            owned = ", ".join(f"{t.removeprefix('sdlc.')}:{p}" for t, p in member.partitions)
            table.add_row(
                group.group if number == 0 else "",
                member.host,
                owned or "-",
                lag if not number else "",
            )
    _out.print(table)
    size = "unknown" if view.dead_letter_size is None else str(view.dead_letter_size)
    _out.print(f"dead letter: {size} records retained")
    if view.live_leases is None:
        _out.print("live leases: unknown (pass --metrics http://<processors>:<port>/metrics)")
    else:
        held = ", ".join(f"{c} {n}" for c, n in view.live_leases.items()) or "none"
        _out.print(f"live leases: {held}")
    for problem in view.problems:
        _out.print(f"[yellow]{problem}[/yellow]")


@click.command()
@click.option(
    "--group",
    "groups",
    multiple=True,
    help="Consumer group to report (repeatable) [default: the coordinator's app id, "
    "sdlcflow-audit, and every sdlcflow-agents-* group].",
)
@click.option(
    "--metrics",
    "metrics_urls",
    multiple=True,
    envvar="SDLCFLOW_METRICS_URLS",
    help="A processors worker's /metrics URL, read for live leases (repeatable) "
    "[env SDLCFLOW_METRICS_URLS, space-separated].",
)
@_json_option
def status(groups: tuple[str, ...], metrics_urls: tuple[str, ...], as_json: bool) -> None:
    """Report each server (pid, address, ready), the topics and the schema version, and the
    services: group partitions, lag per topic, dead-letter size and live leases.

    Exit status 0 when both servers answer with every topic and migration in place, 3 otherwise.
    """
    settings = Settings.from_env()
    with _infra_errors():
        report = local.server_status(settings)
    view = None
    if report.kafka.ready:
        wanted = groups or (_coordinator_group(), "sdlcflow-audit")
        view = overview(settings.kafka_bootstrap, wanted, metrics_urls)
    if as_json:
        _emit_json({**report.to_json(), "services": view.to_json() if view else None})
    else:
        _out.print(_servers_table([report.kafka, report.cassandra]))
        _print_topics(report.topics)
        _print_schema(report.keyspace, report.migrations)
        if view is not None:
            _print_overview(view)
    if not report.healthy:
        raise click.exceptions.Exit(3)


def _coordinator_group() -> str:
    """The coordinator's consumer group: its faust app id (SDLCFLOW_PROCESSORS_APP_ID)."""
    return os.environ.get("SDLCFLOW_PROCESSORS_APP_ID", "").strip() or DEFAULT_APP_ID


@click.command()
@_json_option
def migrate(as_json: bool) -> None:
    """Apply the pending Cassandra schema migrations (each once, in version order)."""
    settings = Settings.from_env()
    with _infra_errors():
        report = local.migrate(settings)
    if as_json:
        _emit_json(report.to_json())
        return
    _print_schema(settings.keyspace, report)
