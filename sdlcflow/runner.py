"""`sdlcflow run`: long-running services — the coordinator processors and agents.

`run processors` starts the faust coordinator (one worker in this process, or N worker
processes with their own data directories); `run agent` belongs to the agent SDK and is
imported only when used, so `run processors` works without it and vice versa.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from sdlcflow.cli import LazyGroup
from sdlcflow.observability import logs
from sdlcflow.observability import service as observability

if TYPE_CHECKING:
    import faust

    from sdlcflow.processors.config import ProcessorConfig

RUN_COMMANDS = {"agent": "sdlcflow.agents.commands:agent"}


@click.group(cls=LazyGroup, lazy=RUN_COMMANDS)
def run() -> None:
    """Run sdlcflow services in the foreground (stop with Ctrl-C or SIGTERM)."""


@run.command("processors")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    envvar="SDLCFLOW_PROCESSORS_WORKERS",
    help="Worker processes; partitions are shared among them (and with other hosts' workers).",
)
@click.option(
    "--store",
    type=click.Choice(["rocksdb", "memory"]),
    default=None,
    envvar="SDLCFLOW_PROCESSORS_STORE",
    help="Table store: rocksdb keeps state and offsets on disk; memory replays the changelog "
    "on start. [default: rocksdb]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="SDLCFLOW_PROCESSORS_DATA_DIR",
    help="Where tables live. [default: $SDLCFLOW_DATA_DIR/processors]",
)
@click.option(
    "--app-id",
    default=None,
    envvar="SDLCFLOW_PROCESSORS_APP_ID",
    help="faust app id: the consumer group and the changelog topics' prefix.",
)
@click.option(
    "--trusted-issuers",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="SDLCFLOW_TRUSTED_ISSUERS",
    help="JSON file {key id: Ed25519 public key (base64url)} of credential issuers.",
)
@click.option(
    "--tick-interval-ms",
    type=click.IntRange(10, 60_000),
    default=None,
    envvar="SDLCFLOW_TICK_INTERVAL_MS",
    help="How often each worker ticks its partitions. [default: 500]",
)
@click.option(
    "--lease-ttl-ms",
    type=click.IntRange(100, None),
    default=None,
    envvar="SDLCFLOW_LEASE_TTL_MS",
    help="How long a grant or heartbeat keeps a lease. [default: 30000]",
)
@click.option(
    "--repos",
    default=None,
    envvar="SDLCFLOW_PROCESSORS_REPOS",
    help="Comma-separated glob patterns of the repositories to serve (default: all).",
)
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="SDLCFLOW_TEMPLATES_DIR",
    help="Directory of pipeline templates (NAME.yaml) planned with beside the packaged ones; "
    "one there replaces the packaged template of its name. Every worker of an app id must "
    "read the same one.",
)
@click.option(
    "--from-end",
    is_flag=True,
    envvar="SDLCFLOW_PROCESSORS_FROM_END",
    help="A new app id (consumer group) starts at the inputs' current end instead of their "
    "beginning; an app id that has offsets resumes from them.",
)
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="SDLCFLOW_LOGLEVEL",
    help="Log level of the worker.",
)
@observability.options
def processors(
    workers: int,
    store: str | None,
    data_dir: Path | None,
    app_id: str | None,
    trusted_issuers: Path | None,
    tick_interval_ms: int | None,
    lease_ttl_ms: int | None,
    repos: str | None,
    templates_dir: Path | None,
    from_end: bool,
    loglevel: str,
    metrics_port: int | None,
    log_format: str,
    log_sample_rate: float,
) -> None:
    """Run the coordinator: decide on change requests, agent events and ticks."""
    from sdlcflow.processors.config import ProcessorConfig, parse_store

    config = ProcessorConfig.from_env().with_options(
        store=parse_store(store) if store else None,
        data_dir=data_dir,
        app_id=app_id,
        trusted_issuers=trusted_issuers,
        tick_interval_ms=tick_interval_ms,
        lease_ttl_ms=lease_ttl_ms,
        repos=tuple(p for p in repos.split(",") if p) if repos else None,
        templates_dir=templates_dir,
    )
    _check_templates(config)
    logging = logs.dict_config(log_format, level=loglevel, success_sample_rate=log_sample_rate)
    if from_end:
        _start_at_end(config)
    if workers == 1:
        _run_worker(config, loglevel, logging, metrics_port)
    else:
        env = {"SDLCFLOW_LOG_FORMAT": log_format, "SDLCFLOW_LOG_SAMPLE_RATE": str(log_sample_rate)}
        sys.exit(_supervise(config, workers, loglevel, metrics_port, env))


def _check_templates(config: ProcessorConfig) -> None:
    """Refuse to start on a templates directory that is missing or holds an invalid template,
    with the problem (file, step) named, before any worker joins the group."""
    from sdlcflow.errors import SdlcflowError
    from sdlcflow.pipelines import known_templates

    try:
        known_templates(config.templates_dir)
    except SdlcflowError as exc:
        raise click.ClickException(str(exc)) from exc


def _start_at_end(config: ProcessorConfig) -> None:
    """Position a new group at the inputs' end once, before any worker joins it."""
    from sdlcflow.processors.engine import INPUT_TOPICS
    from sdlcflow.processors.positions import start_new_group_at_end

    if start_new_group_at_end(config.bootstrap, config.app_id, INPUT_TOPICS):
        click.echo(f"{config.app_id}: a new group, starting at the inputs' current end", err=True)
    else:
        click.echo(f"{config.app_id}: resuming from the group's committed offsets", err=True)


def quiet_worker(app: faust.App, loglevel: str, logging: dict[str, Any]) -> faust.Worker:
    """A faust worker without its terminal spinner. At a log level of warning or above faust
    keeps the spinner, sets the root logger to DEBUG and spins on every record, so each debug
    call of aiokafka, faust and mode built a record: 7% of the worker's CPU at 150 tasks/s."""
    import faust

    worker = faust.Worker(app, loglevel=loglevel, quiet=True, logging_config=logging)
    worker.spinner = None
    return worker


def _run_worker(
    config: ProcessorConfig, loglevel: str, logging: dict[str, Any], metrics_port: int | None
) -> None:
    """One faust worker in this process (returns when it is stopped)."""
    from sdlcflow.observability.collectors import watch_leases
    from sdlcflow.processors.shell import create_app

    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    engine = app.coordinator_shell.engine  # type: ignore[attr-defined]
    watch_leases(lambda: list(engine._states.values()))
    worker = quiet_worker(app, loglevel, logging)
    with observability.observed(
        "sdlcflow-processors",
        metrics_port=metrics_port,
        bootstrap=config.bootstrap,
        groups=[config.app_id],
    ):
        worker.execute_from_commandline()


def _supervise(
    config: ProcessorConfig,
    workers: int,
    loglevel: str,
    metrics_port: int | None,
    log_env: dict[str, str],
) -> int:
    """Start `workers` single-worker processes, forward signals, return the first failure.

    Worker n serves its metrics on `metrics_port + n` (each a port of its own).
    """
    children: list[subprocess.Popen[bytes]] = []
    for number in range(workers):
        env = {**os.environ, **config.env(), **log_env}
        env["SDLCFLOW_PROCESSORS_DATA_DIR"] = str(config.data_dir / f"worker-{number}")
        command = [sys.executable, "-m", "sdlcflow.cli", "run", "processors"]
        command += ["--workers", "1", "--loglevel", loglevel]
        if metrics_port:
            command += ["--metrics-port", str(metrics_port + number)]
        children.append(subprocess.Popen(command, env=env, preexec_fn=_die_with_parent))

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when its supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass  # not Linux: workers outlive a killed supervisor
