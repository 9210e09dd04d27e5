"""`sdlcflow chaos run [--short|--long] [--seed N]`: break things on a seeded schedule and
prove from the outside that no invariant broke; exit 1 when one did."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import click

from sdlcflow.chaos.faults import PROFILES
from sdlcflow.chaos.runner import ChaosReport, run_chaos

RESULTS_DIR = Path("benchmarks") / "results"


@click.group("chaos")
def chaos() -> None:
    """Fault-injection runs against private servers, checked against the invariants."""


@chaos.command("run")
@click.option(
    "--short/--long", "short", default=True, show_default=True,
    help="The CI form (about 2-3 minutes) or the long form for figures (about 11 minutes).",
)  # fmt: skip
@click.option(
    "--seed", type=int, default=None, envvar="SDLCFLOW_CHAOS_SEED",
    help="Seed of the fault schedule (default: the current time; printed, to repeat a run).",
)  # fmt: skip
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the servers, tables and logs go (default: a temp dir, removed after a clean run).",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the JSON report here (default: benchmarks/results/chaos_<form>.json when that "
    "folder exists in the current directory).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def run(
    short: bool, seed: int | None, workdir: Path | None, out: Path | None, as_json: bool
) -> None:
    """Run the workload under faults on a private Kafka + Cassandra and check every invariant."""
    profile = PROFILES["short" if short else "long"]
    seed = seed if seed is not None else int(time.time())
    directory = workdir or Path(tempfile.mkdtemp(prefix=f"sdlcflow-chaos-{profile.name}-"))
    started = time.monotonic()

    def progress(message: str) -> None:
        if not as_json:
            click.echo(f"[{time.monotonic() - started:7.1f}s] {message}", err=True)

    progress(f"chaos {profile.name}, seed {seed}, files in {directory}")
    report = run_chaos(profile, seed, directory, progress)
    target = out or (RESULTS_DIR / f"chaos_{profile.name}.json" if RESULTS_DIR.is_dir() else None)
    if target is not None:
        target.write_text(json.dumps(report.to_json(), indent=2) + "\n", "utf-8")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print(report, target)
    if report.violations:
        raise SystemExit(f"{len(report.violations)} invariant violations; logs in {directory}")
    if workdir is None:
        shutil.rmtree(directory, ignore_errors=True)


def _print(report: ChaosReport, target: Path | None) -> None:
    figures = report.to_json()
    click.echo(f"chaos {report.profile.name} (seed {report.seed})")
    click.echo(f"  changes run:          {report.changes}  outcomes: {report.outcomes}")
    click.echo(f"  fencing decisions:    {report.fencing}")
    click.echo(f"  faults injected:      {len(report.faults)}  {figures['faults_by_kind']}")
    for kind, recovery in figures["recovery_by_kind"].items():
        click.echo(
            f"  recovery {kind:<20} median {recovery['median_s']} s, max {recovery['max_s']} s"
        )
    click.echo(f"  invariant violations: {len(report.violations)}")
    for violation in report.violations[:20]:
        click.echo(f"    {violation.invariant} {violation.subject}: {violation.detail}")
    click.echo(f"  unplanned exits:      {report.unplanned_exits or 'none'}")
    click.echo(
        f"  decisions {report.decisions}, events on topics {report.events_on_topics}, "
        f"audit rows {report.audit_rows}, replay differences "
        f"{len(report.replay.get('differences') or [])}"
    )
    click.echo(f"  durations: {figures['durations_s']}")
    if target is not None:
        click.echo(f"  report written to {target}")
