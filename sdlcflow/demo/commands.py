"""`sdlcflow demo`: play the motivating incident against the local servers, narrated."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path
from types import FrameType

import click

from sdlcflow.demo.errors import DemoError
from sdlcflow.demo.narration import Narrator, RecordingNarrator, RichNarrator
from sdlcflow.demo.scenario import IncidentRun, ScenarioOptions, run_incident
from sdlcflow.settings import Settings


@click.command("demo")
@click.option(
    "--bootstrap",
    default=None,
    envvar="SDLCFLOW_KAFKA_BOOTSTRAP",
    help="Kafka bootstrap servers. [default: the local broker of `sdlcflow up`]",
)
@click.option(
    "--template",
    default="deployment",
    show_default=True,
    envvar="SDLCFLOW_DEMO_TEMPLATE",
    help="Pipeline template both changes go through (test, staging, policy, 2 approvals, prod).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(1, 3600),
    default=180.0,
    show_default=True,
    envvar="SDLCFLOW_DEMO_WAIT",
    help="Seconds any one awaited event may take before the step fails.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="SDLCFLOW_DEMO_WORKDIR",
    help="Where the run directory is created. [default: the system temp dir]",
)
@click.option("--keep", is_flag=True, help="Keep the run directory (logs, repos, keys) afterwards.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run's evidence as JSON at the end."
)
def demo(
    bootstrap: str | None,
    template: str,
    wait_s: float,
    workdir: Path | None,
    keep: bool,
    as_json: bool,
) -> int:
    """Play the motivating incident end to end and prove each step from the log; exits 1 if
    any step did not happen as narrated. Needs `sdlcflow up` (as `make demo` does)."""
    options = ScenarioOptions(
        bootstrap=bootstrap or Settings.from_env().kafka_bootstrap,
        template=template,
        wait_s=wait_s,
        workdir=workdir,
        keep=keep,
    )
    narrator: Narrator = RecordingNarrator() if as_json else RichNarrator()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    run = IncidentRun()
    try:
        run = run_incident(options, narrator)
    except DemoError as exc:  # setting the stage failed before any step could record it
        run.problem = str(exc)
        narrator.failed(run.problem)
    except KeyboardInterrupt:
        run.problem = "interrupted; every process the demo started was stopped"
        narrator.failed(run.problem)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(run), "ok": run.ok}))
        return 0 if run.ok else 1
    rows = [(f"{s.number}. {s.title}", "done" if s.ok else "DID NOT HAPPEN") for s in run.steps]
    narrator.table(f"The incident in {run.repo or 'the demo'}", ("step", "result"), rows)
    if run.ok:
        narrator.passed("the incident was prevented, step by step, as narrated")
    return 0 if run.ok else 1


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so the children are stopped on the way out."""
    raise KeyboardInterrupt
