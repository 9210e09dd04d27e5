"""Is the audit sink cheaper per event than it was? The working tree against a git revision.

On a shared machine absolute rates move with the load, so this compares two versions of the
sink in one run: a private set of topics is filled once with `audit_bench`'s event mix, then
child processes alternate between the two versions (ABBA order), each reading every record
from the start in a fresh consumer group into the real Cassandra, until all are committed.
Each child reports its process CPU (all threads: librdkafka, driver event loop, Python) per
event, its events/s and what it stored; Cassandra's CPU per event is measured around it.
The median of the per-pair CPU ratios is the figure to read; both must store every event.

    .venv/bin/python benchmarks/audit_sink_ab.py --base main [--events 20000] [--rounds 4]

The keyspace must be migrated by both versions (`sdlcflow migrate`). Writes
benchmarks/results/audit_sink_ab.json with the machine description and load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from core_ab import export_revision

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "audit_sink_ab.json"
PARTITIONS = 6


def sink_child(namespace: str, group: str, events: int, batch: int | None) -> None:
    """In a child whose PYTHONPATH picks the version: store every record, print the figures."""
    import resource
    from contextlib import nullcontext

    from sdlcflow.audit import sink as sink_module
    from sdlcflow.audit.sink import AuditSink
    from sdlcflow.audit.store import AuditStore, connect
    from sdlcflow.settings import Settings

    settings = Settings.from_env()
    cluster, session = connect(settings)
    try:
        store = AuditStore(session, settings.keyspace)
        sink = AuditSink(
            store,
            bootstrap=settings.kafka_bootstrap,
            group_id=group,
            namespace=namespace,
            batch_size=sink_module.DEFAULT_BATCH if batch is None else batch,
        )
        # the process set-up of the version's `sdlcflow audit sink`, where it has one
        process_gc = getattr(sink_module, "sink_process_gc", nullcontext)
        with process_gc():
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu, started = usage.ru_utime + usage.ru_stime, time.monotonic()
            stats = sink.run(max_records=events, poll_timeout=0.2)
            seconds = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - cpu
        sink.close()
    finally:
        cluster.shutdown()
    print(json.dumps({"cpu_s": cpu, "seconds": seconds, "stored": stats.stored}))


def run_child(tree: Path, args: list[str], cassandra: Any) -> dict[str, float]:
    from audit_bench import cpu_seconds

    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'benchmarks'}"}
    server = cpu_seconds([cassandra])
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"sink under {tree} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"cassandra_cpu_s": cpu_seconds([cassandra]) - server}


def fill_topics(namespace: str, count: int) -> list[str]:
    """The catalog's topics under `namespace`, with `count` events of the benchmark mix."""
    from audit_bench import encoded, make_events, produce
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from sdlcflow.settings import Settings
    from sdlcflow.streams.topics import catalog
    from sdlcflow.streams.wire import EventCodec

    bootstrap = Settings.from_env().kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [spec.name.replace("sdlc.", f"{namespace}.", 1) for spec in catalog()]
    created = admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in topics], operation_timeout=30
    )
    for future in created.values():
        future.result(60)
    events = make_events(count, int(time.time() * 1000))
    produce(bootstrap, namespace, encoded(EventCodec(), events), None)
    return topics


def delete_topics(topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    from sdlcflow.settings import Settings

    admin = AdminClient({"bootstrap.servers": Settings.from_env().kafka_bootstrap})
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        future.result(60)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare against")
    parser.add_argument("--events", type=int, default=20_000, help="events each child stores")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of runs (ABBA order)")
    parser.add_argument(
        "--batch", type=int, default=None, help="sink records per poll (default: each version's)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        namespace, group, events, batch = args.child
        sink_child(namespace, group, int(events), None if batch == "default" else int(batch))
        return 0
    from audit_bench import cassandra_process

    from sdlcflow.bench.machine import describe_machine
    from sdlcflow.settings import Settings

    cassandra = cassandra_process(Settings.from_env())
    namespace = f"sinkab{uuid.uuid4().hex[:8]}"
    load_at_start = os.getloadavg()[0]
    topics = fill_topics(namespace, args.events)
    runs: dict[str, list[dict[str, float]]] = {"base": [], "work": []}
    try:
        with tempfile.TemporaryDirectory(prefix="audit-sink-ab-") as scratch:
            trees = {"base": export_revision(args.base, Path(scratch) / "base"), "work": ROOT}
            # one untimed pass each: the rows exist afterwards, so every timed pass upserts
            for name in trees:
                run_child(trees[name], _child_args(namespace, name, -1, args), cassandra)
            for round_no in range(args.rounds):
                order = ("base", "work") if round_no % 2 == 0 else ("work", "base")
                for name in order:
                    result = run_child(
                        trees[name], _child_args(namespace, name, round_no, args), cassandra
                    )
                    runs[name].append(_figures(result, args.events))
                print(
                    f"round {round_no + 1}: "
                    + "; ".join(f"{n} {_line(runs[n][-1])}" for n in ("base", "work")),
                    flush=True,
                )
    finally:
        delete_topics(topics)
    report = _report(args, runs, load_at_start) | {"machine": describe_machine()}
    report["machine"]["load_average_1m_at_start"] = load_at_start
    for key, value in report["ratios"].items():
        print(f"{key}: {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


def _child_args(namespace: str, name: str, round_no: int, args: argparse.Namespace) -> list[str]:
    group = f"{namespace}-{name}-{round_no}"
    batch = "default" if args.batch is None else str(args.batch)
    return [namespace, group, str(args.events), batch]


def _figures(result: dict[str, float], events: int) -> dict[str, float]:
    return {
        "sink_cpu_us_per_event": round(result["cpu_s"] / events * 1e6, 1),
        "cassandra_cpu_us_per_event": round(result["cassandra_cpu_s"] / events * 1e6, 1),
        "events_per_s": round(events / result["seconds"]),
        "stored": result["stored"],
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def _line(figures: dict[str, float]) -> str:
    return (
        f"{figures['sink_cpu_us_per_event']:.0f} µs sink CPU/event, "
        f"{figures['cassandra_cpu_us_per_event']:.0f} µs Cassandra, "
        f"{figures['events_per_s']:,.0f} events/s"
    )


def _report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], load: float
) -> dict[str, Any]:
    def median(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[name]))

    pairs = [
        b["sink_cpu_us_per_event"] / w["sink_cpu_us_per_event"]
        for b, w in zip(runs["base"], runs["work"], strict=True)
    ]
    keys = ("sink_cpu_us_per_event", "cassandra_cpu_us_per_event", "events_per_s")
    medians = {name: {key: median(name, key) for key in keys} for name in runs}
    return {
        "benchmark": "audit_sink_ab",
        "started_at": time.time(),
        "base": args.base,
        "params": {"events": args.events, "rounds": args.rounds, "batch": args.batch},
        "medians": medians,
        "ratios": {
            "sink_cpu_base_over_work_median_of_pairs": round(statistics.median(pairs), 2),
            "sink_cpu_base_over_work_per_pair": [round(p, 2) for p in pairs],
            "events_per_s_work_over_base": round(
                medians["work"]["events_per_s"] / medians["base"]["events_per_s"], 2
            ),
            "cassandra_cpu_work_over_base": round(
                medians["work"]["cassandra_cpu_us_per_event"]
                / medians["base"]["cassandra_cpu_us_per_event"],
                2,
            ),
            "every_event_stored": all(
                r["stored"] == args.events for rows in runs.values() for r in rows
            ),
        },
        "runs": runs,
        "load_average_1m_at_start": load,
    }


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
