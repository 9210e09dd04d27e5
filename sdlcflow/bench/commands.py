"""`sdlcflow bench`: the comparative benchmark suite and a single load run."""

from __future__ import annotations

import json
from pathlib import Path

import click

DEFAULT_RESULTS = Path("benchmarks") / "results"


@click.group("bench")
def bench() -> None:
    """Benchmarks: sdlcflow against the bare-Kafka limit and a PostgreSQL baseline."""


@bench.command("suite")
@click.option("--quick", is_flag=True, help="A short run (a few minutes on 2 cores).")
@click.option(
    "--scaling/--no-scaling",
    default=True,
    show_default=True,
    help="Also run 1/2/4 processor workers x 12/48 partitions on a private Kafka node.",
)
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the JSON (default: benchmarks/results/suite[-quick].json).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def suite(quick: bool, scaling: bool, results: Path | None, as_json: bool) -> None:
    """Limit, baseline and sdlcflow side by side at the same offered loads, in one run."""
    from sdlcflow.bench.suite import SuitePlan, run_suite

    plan = SuitePlan.quick() if quick else SuitePlan.full()
    target = results or DEFAULT_RESULTS / ("suite-quick.json" if quick else "suite.json")
    report = run_suite(
        plan,
        target,
        quick=quick,
        with_scaling=scaling,
        say=(lambda _line: None) if as_json else click.echo,
    )
    if as_json:
        click.echo(json.dumps(report, indent=2))


@bench.command("load")
@click.option("--rate", type=float, default=None, help="Changes/s (default: as fast as possible).")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Measured period.")
@click.option("--warmup", type=float, default=5.0, show_default=True, help="Warm-up, excluded.")
@click.option("--changes", type=int, default=200, show_default=True, help="Blast size.")
@click.option("--repos", type=int, default=200, show_default=True, help="Repositories.")
@click.option("--workers", type=int, default=1, show_default=True, help="Processor workers.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Agent work.")
@click.option("--audit/--no-audit", default=False, show_default=True, help="Run a sink too.")
def load(
    rate: float | None,
    seconds: float,
    warmup: float,
    changes: int,
    repos: int,
    workers: int,
    latency_ms: float,
    audit: bool,
) -> None:
    """One load run against sdlcflow on the configured broker; prints the figures as JSON."""
    import tempfile

    from sdlcflow.bench.load import LoadGenerator, LoadSpec
    from sdlcflow.bench.processes import ProcessSet
    from sdlcflow.bench.sdlcflow_system import SdlcflowSystem
    from sdlcflow.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="sdlcflow-bench-load-"))
    procs = ProcessSet(workdir)
    system = SdlcflowSystem(
        Settings.from_env().kafka_bootstrap, workdir, procs, workers=workers,
        latency_ms=latency_ms, audit=audit,
    )  # fmt: skip
    spec = LoadSpec(
        rate=rate, warmup_s=warmup, measure_s=seconds, repos=repos, blast_changes=changes
    )
    try:
        system.start()
        figures = LoadGenerator(system, spec, system.prefix, procs).run()
    finally:
        system.close()
        procs.close()
    click.echo(json.dumps(figures, indent=2))
