"""The comparative benchmark suite: the bare-Kafka limit, the PostgreSQL baseline and sdlcflow
under the same load in ONE run, interleaved per offered rate so the noise of a shared machine
falls on all three; then a scaling run (processor workers x partitions) on a private broker.

    sdlcflow bench suite [--quick]        (or: python benchmarks/suite.py [--quick])

Writes benchmarks/results/suite[-quick].json (with the machine and its load) and a PNG of
latency against offered load beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdlcflow.bench.baseline_system import BaselineSystem
from sdlcflow.bench.limit import LimitRun
from sdlcflow.bench.load import LoadGenerator, LoadSpec
from sdlcflow.bench.machine import describe_machine
from sdlcflow.bench.mix import FIVE_STEP_TEMPLATE, MixSpec
from sdlcflow.bench.plot import plot_latency
from sdlcflow.bench.policy_rates import policy_rates
from sdlcflow.bench.processes import ProcessSet
from sdlcflow.bench.sdlcflow_system import SdlcflowSystem
from sdlcflow.bench.stats import compare
from sdlcflow.infra.local import start_server, stop_server
from sdlcflow.infra.topics import ensure_topics
from sdlcflow.processors.positions import end_offsets
from sdlcflow.settings import Settings
from sdlcflow.streams.topics import catalog

Say = Callable[[str], None]

SYSTEMS = {
    "limit": "bare confluent-kafka: produce -> relay process (consume, produce) -> consume; "
    "no codec, no logic; idempotent acks=all producers; one record = one lease round trip",
    "baseline": "FastAPI/uvicorn HTTP coordinator over a private PostgreSQL 15 lease table "
    "(SELECT ... FOR UPDATE SKIP LOCKED, TTL expiry, fencing epochs, synchronous_commit=off); "
    "HTTP polling agents (batch lease, 10 ms idle poll), same mix and templates",
    "sdlcflow": "`sdlcflow run processors` (faust, rocksdb) + SDK agents (@agent + Worker) + "
    "auto-approver (signed ApprovalSigned) + `sdlcflow audit sink`, on the shared broker",
}


@dataclass(frozen=True)
class SuitePlan:
    """How long and how hard: --quick for a smoke run (~5 min on 2 cores), default longer."""

    rates: tuple[float, ...]  # offered changes/s
    warmup_s: float
    measure_s: float
    blast_changes: int
    repos: int
    limit_blast: int
    scaling_workers: tuple[int, ...]
    scaling_partitions: tuple[int, ...]
    scaling_changes: int
    latency_ms: float = 0.0
    agent_concurrency: int = 64

    @classmethod
    def quick(cls) -> SuitePlan:
        return cls(
            rates=(2.0, 4.0),
            warmup_s=5.0,
            measure_s=20.0,
            blast_changes=50,
            repos=200,
            limit_blast=3000,
            scaling_workers=(1, 2),
            scaling_partitions=(12, 48),
            scaling_changes=40,
        )

    @classmethod
    def full(cls) -> SuitePlan:
        return cls(
            rates=(3.0, 6.0, 12.0),
            warmup_s=10.0,
            measure_s=45.0,
            blast_changes=250,
            repos=400,
            limit_blast=10000,
            scaling_workers=(1, 2, 4),
            scaling_partitions=(12, 48),
            scaling_changes=150,
        )


def _spec(plan: SuitePlan, rate: float | None, mix: MixSpec) -> LoadSpec:
    return LoadSpec(
        rate=rate,
        warmup_s=plan.warmup_s,
        measure_s=plan.measure_s,
        repos=plan.repos,
        blast_changes=plan.blast_changes,
        mix=mix,
    )


def _compare_rows(limit: dict[str, Any], base: dict[str, Any], ours: dict[str, Any]) -> Any:
    def p99(figures: dict[str, Any], key: str) -> float:
        value = figures.get(key, {}).get("p99")
        return float("nan") if value is None else float(value)

    return compare(
        sdlcflow_per_s=ours.get("lease_grants_per_s", 0.0),
        limit_per_s=limit.get("round_trips_per_s", 0.0),
        baseline_per_s=base.get("lease_grants_per_s", 0.0),
        sdlcflow_p99=p99(ours, "enqueue_to_lease_ms"),
        limit_p99=p99(limit, "round_trip_ms"),
        baseline_p99=p99(base, "enqueue_to_lease_ms"),
    ).to_json()


def side_by_side(plan: SuitePlan, bootstrap: str, workdir: Path, say: Say) -> dict[str, Any]:
    """Limit, baseline and sdlcflow at each offered rate, then each as fast as possible."""
    mix = MixSpec()
    (workdir / "sdlcflow").mkdir(parents=True)
    procs = ProcessSet(workdir)
    ours = SdlcflowSystem(
        bootstrap, workdir / "sdlcflow", procs, agent_concurrency=plan.agent_concurrency,
        latency_ms=plan.latency_ms, mix=mix,
    )  # fmt: skip
    base = BaselineSystem(
        procs, agent_concurrency=plan.agent_concurrency,
        latency_ms=plan.latency_ms, mix=mix,
    )  # fmt: skip
    limit = LimitRun(bootstrap, procs, Settings.from_env().partitions)
    rows: list[dict[str, Any]] = []
    try:
        say("starting sdlcflow (processors, agents, audit sink), the baseline and the relay")
        ours.start()
        base.start()
        limit.start()
        generators = {
            "sdlcflow": LoadGenerator(ours, _spec(plan, None, mix), ours.prefix, procs),
            "baseline": LoadGenerator(base, _spec(plan, None, mix), "pg-bench/", procs),
        }
        for generator in generators.values():
            generator.probe()
        audit_start = ours.audit_committed()
        audit_t0 = time.monotonic()
        for rate in [*plan.rates, None]:
            rows.append(_one_load(plan, rate, mix, limit, generators, say))
        audit = ours.audit_catch_up(timeout_s=120.0)
        audit_written = ours.audit_committed() - audit_start
        audit["events_written"] = audit_written
        audit["events_per_s"] = round(audit_written / (time.monotonic() - audit_t0), 1)
    finally:
        say("stopping the run's processes and cleaning up")
        with contextlib.ExitStack() as teardown:  # every close runs, even when one fails
            for close in (procs.close, ours.close, base.close, limit.close):
                teardown.callback(close)
    return {"loads": rows, "audit": audit}


def _one_load(
    plan: SuitePlan,
    rate: float | None,
    mix: MixSpec,
    limit: LimitRun,
    generators: dict[str, LoadGenerator],
    say: Say,
) -> dict[str, Any]:
    label = "as fast as possible" if rate is None else f"{rate:g} changes/s"
    row: dict[str, Any] = {"offered_changes_per_s": rate}
    spec = _spec(plan, rate, mix)
    tasks_per_s = spec.offered_tasks_per_s()
    if tasks_per_s is None:
        row["limit"] = limit.blast(plan.limit_blast)
    else:
        row["limit"] = limit.at_rate(tasks_per_s, plan.measure_s)
    say(f"[{label}] limit: {row['limit']['round_trips_per_s']} round trips/s")
    for name, generator in generators.items():
        generator.spec = spec
        generator.system.record.measured.clear()
        row[name] = generator.run(probe=False)
        five_step = row[name].get("clean_change_end_to_end_ms", {}).get(FIVE_STEP_TEMPLATE, {})
        say(
            f"[{label}] {name}: {row[name].get('lease_grants_per_s')} grants/s, "
            f"{row[name].get('changes_per_s')} changes/s, enqueue->lease p99 "
            f"{row[name].get('enqueue_to_lease_ms', {}).get('p99')} ms, 5-step change "
            f"p50/p99 {five_step.get('p50')}/{five_step.get('p99')} ms"
        )
    row["sdlcflow_vs"] = _compare_rows(row["limit"], row["baseline"], row["sdlcflow"])
    say(f"[{label}] sdlcflow vs limit/baseline: {row['sdlcflow_vs']}")
    return row


# ------------------------------------------------------------------------------ scaling


class PrivateKafka:
    """A Kafka node of our own (port, data dir, partition count): the shared broker's topics
    have 12 partitions and other people's traffic; 48 needs topics of its own."""

    def __init__(self, workdir: Path, partitions: int, port: int) -> None:
        self.settings = dataclasses.replace(
            Settings.from_env(),
            kafka_bootstrap=f"127.0.0.1:{port}",
            data_dir=workdir / f"kafka-{partitions}",
            partitions=partitions,
            kafka_given=False,
        )

    def __enter__(self) -> Settings:
        from sdlcflow.infra.local import _admin

        start_server(self.settings, "kafka", timeout_s=180)
        specs = catalog(self.settings.partitions)
        ensure_topics(_admin(self.settings), specs, timeout_s=120)
        # a fresh node answers metadata before every partition serves offsets: wait for that
        end_offsets(self.settings.kafka_bootstrap, [s.name for s in specs], deadline_s=120)
        return self.settings

    def __exit__(self, *_exc: object) -> None:
        stop_server(self.settings, "kafka")


def scaling(plan: SuitePlan, workdir: Path, say: Say) -> list[dict[str, Any]]:
    """Blast the same change count through 1, 2, 4 workers on 12 and 48 partitions."""
    rows: list[dict[str, Any]] = []
    mix = MixSpec()
    port = int(os.environ.get("SDLCFLOW_BENCH_KAFKA_PORT", "19092"))
    for partitions in plan.scaling_partitions:
        with PrivateKafka(workdir, partitions, port) as settings:
            for workers in plan.scaling_workers:
                run_dir = workdir / f"scale-{partitions}-{workers}"
                run_dir.mkdir(parents=True)
                procs = ProcessSet(run_dir)
                system = SdlcflowSystem(
                    settings.kafka_bootstrap, run_dir, procs, workers=workers,
                    agent_concurrency=plan.agent_concurrency, mix=mix, audit=False,
                    partitions=partitions,
                )  # fmt: skip
                try:
                    system.start()
                    spec = dataclasses.replace(
                        _spec(plan, None, mix), blast_changes=plan.scaling_changes
                    )
                    figures = LoadGenerator(system, spec, system.prefix, procs).run()
                finally:
                    system.close()
                    procs.close()
                row = {"partitions": partitions, "workers": workers, **figures}
                rows.append(row)
                say(
                    f"[scaling] {partitions} partitions, {workers} worker(s): "
                    f"{figures.get('lease_grants_per_s')} grants/s, "
                    f"{figures.get('changes_per_s')} changes/s"
                )
    return rows


# ------------------------------------------------------------------------------ the run


def run_suite(
    plan: SuitePlan, results: Path, *, quick: bool, with_scaling: bool, say: Say
) -> dict[str, Any]:
    """Policy rates, the side-by-side loads, then scaling; the JSON is written after each
    part, so a scaling run cut short still leaves the comparison on disk."""
    settings = Settings.from_env()
    workdir = Path(tempfile.mkdtemp(prefix="sdlcflow-bench-suite-"))
    report: dict[str, Any] = {
        "benchmark": "suite",
        "quick": quick,
        "started_at": time.time(),
        "machine_at_start": describe_machine(),
        "plan": dataclasses.asdict(plan),
        "mix": dataclasses.asdict(MixSpec()),
        "systems": SYSTEMS,
    }
    try:
        say("policy evaluations (cached and uncached)")
        report["policy_evaluations"] = policy_rates(seconds=2.0 if quick else 5.0)
        say(f"policy: {report['policy_evaluations']}")
        side = side_by_side(plan, settings.kafka_bootstrap, workdir / "side", say)
        report["side_by_side"], report["audit"] = side["loads"], side["audit"]
        _write(report, results, say)
        if with_scaling:
            report["scaling"] = scaling(plan, workdir / "scaling", say)
            _write(report, results, say)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _write(report: dict[str, Any], results: Path, say: Say) -> None:
    report["machine_at_end"] = describe_machine()
    report["duration_s"] = round(time.time() - report["started_at"], 1)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    plot_latency(report, results.with_suffix(".png"))
    say(f"wrote {results} and {results.with_suffix('.png')}")
