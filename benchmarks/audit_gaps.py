"""Why does the sink cost Cassandra more CPU per event than the write path alone?

Two suspects, each varied alone while the same kind of rows is written through the same
store, batching and requests in flight as the sink's (every statement bound beforehand):

1. grouping: the rows of N events grouped at once (the sink groups per poll of 2,000; the
   write path alone groups all of them), sent back to back;
2. idle gaps: the rows sent per 2,000 events (a poll), each burst acknowledged before the next,
   with an idle pause of G ms between bursts, as when the sink decodes its next poll while
   Cassandra has nothing left to do. The pause is the variable under test, not a stand-in for
   work.

Rounds alternate the variants so drifting load hits them all; Cassandra's CPU per event is
read from its JVM process around each variant.

    .venv/bin/python benchmarks/audit_gaps.py [--events 30000] [--rounds 2]

Writes benchmarks/results/audit_gaps.json with the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
from audit_bench import cassandra_process, cpu_meter, make_events, rows_for, write_path_alone

from sdlcflow.audit.store import AuditStore, connect
from sdlcflow.audit.writes import Write, group_writes
from sdlcflow.bench.machine import describe_machine
from sdlcflow.settings import Settings
from sdlcflow.streams.wire import EventCodec

RESULTS = Path(__file__).parent / "results" / "audit_gaps.json"
POLL = 2_000


def bursts(codec: EventCodec, store: AuditStore, count: int, per: int) -> list[list[Write]]:
    """Fresh events' rows, grouped `per` events at a time."""
    events = make_events(count, int(time.time() * 1000))
    return [
        group_writes(rows_for(codec, events[i : i + per]), route=store.route())
        for i in range(0, count, per)
    ]


def measure(
    store: AuditStore, chunks: list[list[Write]], gap_s: float, cassandra: Any, count: int
) -> dict[str, float]:
    with cpu_meter([psutil.Process()], cassandra) as took:
        for writes in chunks:
            write_path_alone(store, writes)
            if gap_s:
                time.sleep(gap_s)  # the idle gap under test
    busy = took["seconds"] - gap_s * len(chunks)
    return {
        "cassandra_cpu_us_per_event": round(took["cassandra_cpu_s"] / count * 1e6, 1),
        "events_per_busy_s": round(count / busy),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--groupings", default="2000,8000,30000", help="events grouped at once")
    parser.add_argument("--gaps-ms", default="0,30,100", help="idle ms between 2,000-event bursts")
    args = parser.parse_args()
    settings = Settings.from_env()
    cluster, session = connect(settings)
    cassandra = cassandra_process(settings)
    codec = EventCodec()
    store = AuditStore(session, settings.keyspace)
    variants = [("grouping", int(n)) for n in args.groupings.split(",")]
    variants += [("gap_ms", int(g)) for g in args.gaps_ms.split(",")]
    runs: dict[str, list[dict[str, float]]] = {f"{k} {v}": [] for k, v in variants}
    load_at_start = os.getloadavg()[0]
    try:
        for round_no in range(args.rounds):
            for kind, value in variants:
                per = value if kind == "grouping" else POLL
                gap_s = value / 1000 if kind == "gap_ms" else 0.0
                chunks = bursts(codec, store, args.events, per)
                figures = measure(store, chunks, gap_s, cassandra, args.events)
                runs[f"{kind} {value}"].append(figures)
                print(f"round {round_no + 1}, {kind} {value}: {figures}", flush=True)
    finally:
        cluster.shutdown()
    medians = {
        name: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for name, rounds in runs.items()
    }
    for name, figures in medians.items():
        print(f"median {name}: {figures}")
    machine = describe_machine() | {"load_average_1m_at_start": load_at_start}
    report = {
        "benchmark": "audit_gaps",
        "params": vars(args),
        "medians": medians,
        "rounds": runs,
        "machine": machine,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
