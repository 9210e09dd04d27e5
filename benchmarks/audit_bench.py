"""Audit sink benchmark: events/s stored with zero loss, and audit lag under a steady load.

Runs against the real local Kafka and Cassandra (`sdlcflow up`), on a private copy of the topic
catalog so live traffic is not disturbed. Two phases:

1. throughput: N events are produced first, then one sink drains them; events/s is N over the
   time from the sink's start to the last acknowledged write. Every event is then looked up in
   `events_by_id` and its trace partition: any missing or duplicated row is reported as loss.
2. lag: events are produced at a fixed rate while the sink runs; the lag of an event is the
   time from its Kafka timestamp to Cassandra's acknowledgement of its rows.

    .venv/bin/python benchmarks/audit_bench.py --events 50000 --rate 2000 --seconds 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sdlcflow.audit.sink import AuditSink
from sdlcflow.audit.store import AuditStore, connect
from sdlcflow.bench.machine import describe_machine
from sdlcflow.core.events import Event
from sdlcflow.settings import Settings
from sdlcflow.streams.testing import sample_event
from sdlcflow.streams.topics import catalog
from sdlcflow.streams.wire import EventCodec

RESULTS = Path(__file__).parent / "results" / "audit_bench.json"
# a realistic mix: mostly lease traffic and decisions, some changes and policy events
MIX = (
    ["LeaseHeartbeat"] * 6
    + ["LeaseExtended"] * 6
    + ["TaskReady", "LeaseRequested", "LeaseGranted", "TaskSucceeded", "TaskCompleted"] * 2
    + ["ChangeRequested", "ChangePromoted", "PolicyEvaluated", "ApprovalSigned", "TaskFailed"]
)
INPUTS = {"ChangeRequested", "LeaseHeartbeat", "LeaseRequested", "TaskSucceeded", "TaskFailed"}


def make_events(count: int, start_ms: int) -> list[tuple[str, Event]]:
    """`count` events over 200 repositories, ~30 events per trace/change."""
    out: list[tuple[str, Event]] = []
    templates = {t: sample_event(t) for t in set(MIX)}
    trace, change = uuid.uuid4().hex, str(uuid.uuid4())
    for i in range(count):
        if i % 30 == 0:
            trace, change = uuid.uuid4().hex, str(uuid.uuid4())
        kind = MIX[i % len(MIX)]
        base = templates[kind]
        envelope = dataclasses.replace(
            base.envelope,
            event_id=str(uuid.uuid4()),
            occurred_at=start_ms + i,
            repo=f"org/repo-{i % 200}",
            change_id=change,
            task_id=f"{change}/step-{i % 5}",
            trace_id=trace,
        )
        out.append(
            ("agent-events" if kind in INPUTS else "coordinator", Event(envelope, base.payload))
        )
    return out


def produce(
    bootstrap: str, ns: str, events: list[tuple[str, bytes, bytes]], rate: float | None
) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,  # batch for throughput; the benchmark measures the sink, not us
            "compression.type": "lz4",
        }
    )
    started = time.monotonic()
    for i, (topic, key, value) in enumerate(events):
        if rate is not None:
            due = started + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                producer.produce(f"{ns}.{topic}", value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    return time.monotonic() - started


def encoded(codec: EventCodec, events: list[tuple[str, Event]]) -> list[tuple[str, bytes, bytes]]:
    return [(t, e.envelope.repo.encode(), codec.encode(e)) for t, e in events]


def verify(session: Any, keyspace: str, events: list[tuple[str, Event]]) -> dict[str, int]:
    """Rows per event in events_by_id and in its trace partition: expected exactly one."""
    by_id = session.prepare(f"SELECT count(*) FROM {keyspace}.events_by_id WHERE event_id = ?")
    by_trace = session.prepare(
        f"SELECT count(*) FROM {keyspace}.events_by_trace "
        "WHERE trace_id = ? AND occurred_at = ? AND event_id = ?"
    )
    ids = [(e.event_id,) for _, e in events]
    traces = [(e.envelope.trace_id, e.occurred_at, e.event_id) for _, e in events]
    missing = duplicated = 0
    for statement, params in ((by_id, ids), (by_trace, traces)):
        for ok, result in execute_concurrent_with_args(session, statement, params, concurrency=64):
            n = result.one()[0] if ok else 0
            missing += n == 0
            duplicated += n > 1
    return {"missing": missing, "duplicated": duplicated, "checked": 2 * len(events)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="events in the throughput phase")
    parser.add_argument("--rate", type=float, default=2000, help="events/s in the lag phase")
    parser.add_argument("--seconds", type=float, default=20, help="length of the lag phase")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2000, help="sink records per poll")
    parser.add_argument("--max-in-flight", type=int, default=256)
    args = parser.parse_args()

    settings = Settings.from_env()
    ns = f"bench{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topics = [spec.name.replace("sdlc.", f"{ns}.", 1) for spec in catalog()]
    for future in admin.create_topics(
        [NewTopic(t, args.partitions, 1) for t in topics], operation_timeout=30
    ).values():
        future.result(60)
    codec = EventCodec()
    cluster, session = connect(settings)
    try:
        store = AuditStore(session, settings.keyspace, max_in_flight=args.max_in_flight)
        now = int(time.time() * 1000)
        bulk = make_events(args.events, now)
        produce_s = produce(settings.kafka_bootstrap, ns, encoded(codec, bulk), None)
        print(f"produced {len(bulk)} events in {produce_s:.1f}s")

        sink = AuditSink(
            store,
            bootstrap=settings.kafka_bootstrap,
            group_id=f"{ns}-sink",
            namespace=ns,
            batch_size=args.batch,
            codec=codec,
        )
        started = time.monotonic()
        stats = sink.run(max_records=len(bulk), poll_timeout=0.2)
        drain_s = time.monotonic() - started
        throughput = stats.stored / drain_s
        rows = store.stats.rows
        print(
            f"stored {stats.stored} events ({rows} rows, {store.stats.requests} requests) "
            f"in {drain_s:.1f}s: {throughput:,.0f} events/s, {rows / drain_s:,.0f} rows/s"
        )
        loss = verify(session, settings.keyspace, bulk)
        print(f"verification: {loss}")

        steady = make_events(int(args.rate * args.seconds), int(time.time() * 1000))
        payloads = encoded(codec, steady)
        lag_sink = sink
        lag_sink.stats = type(sink.stats)()
        runner = threading.Thread(
            target=lambda: lag_sink.run(max_records=len(steady), poll_timeout=0.1)
        )
        runner.start()
        produced_s = produce(settings.kafka_bootstrap, ns, payloads, args.rate)
        runner.join(timeout=600)
        lag = lag_sink.stats
        print(
            f"lag at {len(steady) / produced_s:,.0f} events/s: mean {lag.lag_mean_ms:.0f} ms, "
            f"max {lag.lag_max_ms} ms"
        )
        sink.close()
        result = {
            "benchmark": "audit_bench",
            "machine": describe_machine(),
            "params": vars(args),
            "throughput": {
                "events": stats.stored,
                "rows": rows,
                "seconds": round(drain_s, 2),
                "events_per_s": round(throughput),
                "rows_per_s": round(rows / drain_s),
                "target_events_per_s": 10_000,
                "retries": store.stats.retries,
            },
            "zero_loss": loss,
            "lag": {
                "rate_events_per_s": round(len(steady) / produced_s),
                "events": lag.stored,
                "mean_ms": round(lag.lag_mean_ms),
                "max_ms": lag.lag_max_ms,
            },
        }
    finally:
        cluster.shutdown()
        admin.delete_topics(topics, operation_timeout=30)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
