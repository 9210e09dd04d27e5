"""Audit sink benchmark: events/s stored with zero loss, beside the Cassandra write path alone,
and audit lag under a steady load.

Runs against the real local Kafka and Cassandra (`sdlcflow up`), on a private copy of the topic
catalog so live traffic is not disturbed. Phases:

1. throughput, in alternated rounds so that the ratio holds on a loaded machine:
   a. the write path alone (the yardstick): the rows of N fresh events, every statement bound
      beforehand, sent through the same driver, batching and concurrency as the sink: what
      Cassandra on this machine accepts from a Python client, with no Kafka and no decoding;
   b. the sink: N events are produced first, then a sink drains them; events/s is N over the
      time from the sink's start to the last acknowledged write.
   Every sink event is then looked up in `events_by_id` and its trace partition: any missing
   or duplicated row is reported as loss.
2. lag: events are produced at a fixed rate while the sink runs; the lag of an event is the
   time from its Kafka timestamp to Cassandra's acknowledgement of its rows.

    .venv/bin/python benchmarks/audit_bench.py --events 20000 --rounds 3 --rate 2000 --seconds 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import Statement
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sdlcflow.audit.rows import Origin, audit_record, placements
from sdlcflow.audit.sink import AuditSink
from sdlcflow.audit.store import DEFAULT_MAX_IN_FLIGHT, AuditStore, connect
from sdlcflow.audit.writes import Row, group_writes, rows_of
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
    ids: list[tuple[Any, ...]] = [(e.event_id,) for _, e in events]
    traces: list[tuple[Any, ...]] = [
        (e.envelope.trace_id, e.occurred_at, e.event_id) for _, e in events
    ]
    counts: list[int] = []
    unchecked = 0
    for statement, params in ((by_id, ids), (by_trace, traces)):
        for _attempt in range(5):  # reads time out on a saturated node: ask again
            results = execute_concurrent_with_args(
                session, statement, params, concurrency=16, raise_on_first_error=False
            )
            retry = []
            for args, (ok, result) in zip(params, results, strict=True):
                if ok:
                    counts.append(result.one()[0])
                else:
                    retry.append(args)
            params = retry
            if not params:
                break
        unchecked += len(params)
    return {
        "missing": sum(n == 0 for n in counts),
        "duplicated": sum(n > 1 for n in counts),
        "checked": len(counts),
        "unchecked_after_timeouts": unchecked,
    }


def rows_for(codec: EventCodec, events: list[tuple[str, Event]]) -> list[Row]:
    """The rows the sink would write for `events` (built before timing the write path alone)."""
    rows: list[Row] = []
    for i, (topic, event) in enumerate(events):
        record = audit_record(event, codec.encode(event), Origin(topic, 0, i))
        rows += rows_of(record, placements(event))
    return rows


def write_path_alone(store: AuditStore, rows: list[Row]) -> tuple[float, int]:
    """Seconds to write `rows` with every statement bound beforehand, and the requests retried:
    Cassandra's share alone, through the same driver, batching, concurrency and retry-until-acked
    as the sink (cassandra-stress-like)."""
    todo = [store.statement(w) for w in group_writes(rows, route=store.route())]
    retried = 0
    started = time.monotonic()
    while todo:
        todo = _send_all(store, todo)
        retried += len(todo)
    return time.monotonic() - started, retried


def _send_all(store: AuditStore, statements: list[Statement]) -> list[Statement]:
    """Send with at most `max_in_flight` outstanding; return the statements that failed."""
    slots = threading.BoundedSemaphore(store.max_in_flight)
    failed: list[Statement] = []

    def done(_: Any) -> None:
        slots.release()

    def error(_: BaseException, statement: Statement) -> None:
        failed.append(statement)
        slots.release()

    for statement in statements:
        slots.acquire()
        future = store.session.execute_async(statement)
        future.add_callbacks(done, error, errback_args=(statement,))
    for _ in range(store.max_in_flight):
        slots.acquire()
    return failed


def drain(sink: AuditSink, count: int) -> float:
    """Seconds for `sink` to store `count` more events, already on the topics."""
    started = time.monotonic()
    sink.run(max_records=sink.stats.consumed + count, poll_timeout=0.2)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="write-path/sink pairs, alternated")
    parser.add_argument("--rate", type=float, default=2000, help="events/s in the lag phase")
    parser.add_argument("--seconds", type=float, default=20, help="length of the lag phase")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2000, help="sink records per poll")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
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
        sink = AuditSink(
            store,
            bootstrap=settings.kafka_bootstrap,
            group_id=f"{ns}-sink",
            namespace=ns,
            batch_size=args.batch,
            codec=codec,
        )
        warm = make_events(1000, int(time.time() * 1000))  # joins the group, fills caches
        produce(settings.kafka_bootstrap, ns, encoded(codec, warm), None)
        drain(sink, len(warm))
        rounds = []
        measured: list[tuple[str, Event]] = []
        for round_no in range(args.rounds):
            raw_events = make_events(args.events, int(time.time() * 1000))
            raw_rows = rows_for(codec, raw_events)
            raw_s, raw_retries = write_path_alone(store, raw_rows)
            bulk = make_events(args.events, int(time.time() * 1000))
            measured += bulk
            produce(settings.kafka_bootstrap, ns, encoded(codec, bulk), None)
            rows_before = store.stats.rows
            sink_s = drain(sink, len(bulk))
            rounds.append(
                {
                    "write_path_alone_events_per_s": round(len(raw_events) / raw_s),
                    "write_path_alone_rows_per_s": round(len(raw_rows) / raw_s),
                    "sink_events_per_s": round(len(bulk) / sink_s),
                    "sink_rows_per_s": round((store.stats.rows - rows_before) / sink_s),
                    "sink_fraction_of_write_path": round(raw_s / sink_s, 3),
                    "write_path_alone_retries": raw_retries,
                    "load_average_1m": round(os.getloadavg()[0], 1),
                }
            )
            print(f"round {round_no + 1}: {rounds[-1]}")
        loss = verify(session, settings.keyspace, measured)
        print(f"verification: {loss}")

        steady = make_events(int(args.rate * args.seconds), int(time.time() * 1000))
        payloads = encoded(codec, steady)
        sink.stats = type(sink.stats)()
        runner = threading.Thread(
            target=lambda: sink.run(max_records=len(steady), poll_timeout=0.1)
        )
        runner.start()
        produced_s = produce(settings.kafka_bootstrap, ns, payloads, args.rate)
        runner.join(timeout=600)
        lag = sink.stats
        sink.close()
        print(
            f"lag at {len(steady) / produced_s:,.0f} events/s: mean {lag.lag_mean_ms:.0f} ms, "
            f"max {lag.lag_max_ms} ms"
        )
        medians = {
            key: statistics.median(r[key] for r in rounds)
            for key in rounds[0]
            if key != "load_average_1m"
        }
        print(f"medians: {medians}")
        result = {
            "benchmark": "audit_bench",
            "machine": describe_machine(),
            "params": vars(args),
            "rows_per_event": round(len(rows_for(codec, measured[:2000])) / 2000, 2),
            "target_events_per_s": 10_000,
            "medians": medians,
            "rounds": rounds,
            "retries": store.stats.retries,
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
