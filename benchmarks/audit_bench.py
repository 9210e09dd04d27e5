"""Audit sink benchmark: events/s stored with zero loss, beside the Cassandra write path alone,
with the CPU each side spends per event, and audit lag under a steady load.

Runs against the real local Kafka and Cassandra (`sdlcflow up`), on a private copy of the topic
catalog so live traffic is not disturbed. Phases:

1. throughput, in alternated rounds so that the ratios hold on a loaded machine:
   a. the write path alone (the yardstick): the rows of N fresh events, every statement bound
      beforehand, sent through the same driver, batching and concurrency as the sink: what
      Cassandra on this machine accepts from a Python client, with no Kafka and no decoding.
      Two layouts side by side: `before` (seven tables per event, rows batched in arrival order,
      as before migration 0003) and `after` (the rows the sink writes now, grouped by partition);
   b. the sink, with 1 and then `--sinks` processes in one consumer group: N events are
      produced, and events/s is N over the time from the first produce until the group's
      committed offsets reach the end of every partition (every row acknowledged first).
   Each phase records the CPU it cost per event: the client (process CPU time of the writer or
   of the sink processes) and Cassandra's JVM (found by its CQL port).
   Every sink event is then looked up in `events_by_id` and its change partition: any missing
   or duplicated row is reported as loss.
2. ceiling: the `after` rows written by `--ceiling-processes` processes at once, each with
   `--ceiling-in-flight` requests outstanding: what the co-located Cassandra accepts at most.
3. lag: events are produced at a fixed rate while one sink runs; the lag of an event is the
   time from its Kafka timestamp to Cassandra's acknowledgement of its rows.

Its keyspace must be migrated by this version (`sdlcflow migrate`; SDLCFLOW_KEYSPACE picks
another keyspace, e.g. to keep the benchmark's rows apart):

    .venv/bin/python benchmarks/audit_bench.py --events 20000 --rounds 3 --sinks 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import Statement
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sdlcflow.audit.rows import Origin, Placement, audit_record, placements
from sdlcflow.audit.sink import DEFAULT_BATCH, AuditSink, sink_process_gc
from sdlcflow.audit.store import DEFAULT_MAX_IN_FLIGHT, AuditStore, connect
from sdlcflow.audit.writes import Row, Write, cut_batches, group_writes, rows_of
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
    + ["TaskReady", "LeaseRequested", "LeaseGranted", "TaskSucceeded", "TaskFailed"] * 2
    + ["ChangeRequested", "ChangePromoted", "PolicyEvaluated", "ApprovalSigned", "TaskFailed"]
)
INPUTS = {"ChangeRequested", "LeaseHeartbeat", "LeaseRequested", "TaskSucceeded", "TaskFailed"}
LOOKUPS = ("changes_by_trace", "changes_by_task")
VERIFY_CHUNK = 2000


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
    """Rows per event in events_by_id and in its change partition: expected exactly one."""
    by_id = session.prepare(f"SELECT count(*) FROM {keyspace}.events_by_id WHERE event_id = ?")
    by_change = session.prepare(
        f"SELECT count(*) FROM {keyspace}.events_by_change "
        "WHERE change_id = ? AND occurred_at = ? AND event_id = ?"
    )
    ids: list[tuple[Any, ...]] = [(e.event_id,) for _, e in events]
    changes: list[tuple[Any, ...]] = [
        (e.envelope.change_id, e.occurred_at, e.event_id) for _, e in events
    ]
    counts: list[int] = []
    unchecked = 0
    for statement, params in ((by_id, ids), (by_change, changes)):
        for _attempt in range(5):  # reads time out on a saturated node: ask again
            params = _count_rows(session, statement, params, counts)
            if not params:
                break
        unchecked += len(params)
    return {
        "missing": sum(n == 0 for n in counts),
        "duplicated": sum(n > 1 for n in counts),
        "checked": len(counts),
        "unchecked_after_timeouts": unchecked,
    }


def _count_rows(
    session: Any, statement: Any, params: list[tuple[Any, ...]], counts: list[int]
) -> list[tuple[Any, ...]]:
    """Append each key's row count to `counts`, in chunks; return the keys not answered (a
    chunk whose node went away mid-read is asked again later, not counted as missing)."""
    unanswered: list[tuple[Any, ...]] = []
    for start in range(0, len(params), VERIFY_CHUNK):
        chunk = params[start : start + VERIFY_CHUNK]
        try:
            results = execute_concurrent_with_args(
                session, statement, chunk, concurrency=16, raise_on_first_error=False
            )
        except Exception:  # the driver's executor can fail whole when the node restarts
            unanswered += chunk
            time.sleep(5)
            continue
        for args, (ok, result) in zip(chunk, results, strict=True):
            if ok:
                counts.append(result.one()[0])
            else:
                unanswered.append(args)
    return unanswered


def seven_table_placements(event: Event) -> list[Placement]:
    """The placements before migration 0003: every event also in its trace's and task's own
    partitions, no lookups (the `before` layout of the write path alone)."""
    places = [p for p in placements(event) if p.table not in LOOKUPS]
    envelope = event.envelope
    if envelope.change_id:
        places.append(Placement("events_by_trace"))
        if envelope.task_id:
            places.append(Placement("events_by_task"))
    return places


def rows_for(
    codec: EventCodec,
    events: list[tuple[str, Event]],
    place: Callable[[Event], list[Placement]] = placements,
) -> list[Row]:
    """The rows of `events` in a layout (built before timing the write path alone)."""
    rows: list[Row] = []
    for i, (topic, event) in enumerate(events):
        record = audit_record(event, codec.encode(event), Origin(topic, 0, i))
        rows += rows_of(record, place(event))
    return rows


def in_arrival_order(rows: list[Row]) -> list[Write]:
    """Batches of rows as they came (the grouping before this change), under the same limits."""
    return cut_batches(rows)


# requests in flight before this change (the sink's default then)
IN_FLIGHT_BEFORE = 16
LAYOUTS: dict[str, tuple[Callable[[Event], list[Placement]], bool, int]] = {
    # name: (placements, grouped by partition, requests in flight)
    "before": (seven_table_placements, False, IN_FLIGHT_BEFORE),
    "after": (placements, True, DEFAULT_MAX_IN_FLIGHT),
}


def cassandra_process(settings: Settings) -> psutil.Process | None:
    """The process listening on Cassandra's CQL port (its CPU is Cassandra's cost), if visible."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if (
                conn.status == psutil.CONN_LISTEN
                and conn.laddr
                and conn.laddr.port == settings.cassandra_port
                and conn.pid is not None
            ):
                return psutil.Process(conn.pid)
    except (psutil.Error, OSError):
        return None
    return None


def cpu_seconds(processes: list[psutil.Process | None]) -> float:
    total = 0.0
    for process in processes:
        if process is None:
            continue
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


@contextmanager
def cpu_meter(
    processes: list[psutil.Process | None], cassandra: psutil.Process | None
) -> Iterator[dict[str, float]]:
    """Wall time, and CPU seconds of `processes` and of Cassandra, over the block."""
    out: dict[str, float] = {}
    client, server, started = cpu_seconds(processes), cpu_seconds([cassandra]), time.monotonic()
    yield out
    out["seconds"] = time.monotonic() - started
    out["client_cpu_s"] = cpu_seconds(processes) - client
    out["cassandra_cpu_s"] = cpu_seconds([cassandra]) - server


def write_path_alone(store: AuditStore, writes: list[Write]) -> int:
    """Write with every statement bound beforehand; the requests retried: Cassandra's share
    alone, through the same driver, batching, concurrency and retry-until-acked as the sink."""
    todo = [store.statement(w) for w in writes]
    retried = 0
    while todo:
        todo = _send_all(store, todo)
        retried += len(todo)
    return retried


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


def layout_round(
    session: Any,
    keyspace: str,
    codec: EventCodec,
    layout: str,
    count: int,
    cassandra: psutil.Process | None,
) -> dict[str, Any]:
    """The write path alone in one layout: rows, grouping and requests in flight."""
    place, by_partition, in_flight = LAYOUTS[layout]
    store = AuditStore(session, keyspace, max_in_flight=in_flight)
    events = make_events(count, int(time.time() * 1000))
    rows = rows_for(codec, events, place)
    writes = group_writes(rows, route=store.route()) if by_partition else in_arrival_order(rows)
    written = sum(write.events for write in writes)  # a poll's repeated lookup rows go once
    with cpu_meter([psutil.Process()], cassandra) as took:
        retries = write_path_alone(store, writes)
    figures = _figures(f"write path {layout}", count, written, took)
    return figures | {"in_flight": in_flight, "retries": retries}


def _figures(name: str, events: int, rows: int | None, took: dict[str, float]) -> dict[str, Any]:
    """Events/s and CPU per event of one timed phase (rows per event where they were counted)."""
    seconds, count = took["seconds"], max(events, 1)
    figures: dict[str, Any] = {"phase": name, "events_per_s": round(events / seconds)}
    if rows is not None:
        figures["rows_per_event"] = round(rows / count, 2)
    return figures | {
        "client_cpu_us_per_event": round(took["client_cpu_s"] / count * 1e6),
        "cassandra_cpu_us_per_event": round(took["cassandra_cpu_s"] / count * 1e6),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


# ---- sinks in their own processes, one consumer group ----


def _sink_process(ns: str, group: str, batch: int, in_flight: int, stop: Any) -> None:
    settings = Settings.from_env()
    cluster, session = connect(settings)
    try:
        store = AuditStore(session, settings.keyspace, max_in_flight=in_flight)
        sink = AuditSink(
            store,
            bootstrap=settings.kafka_bootstrap,
            group_id=group,
            namespace=ns,
            batch_size=batch,
        )

        def stop_when_told() -> None:
            stop.wait()
            sink.stop()

        threading.Thread(target=stop_when_told, daemon=True).start()
        with sink_process_gc():  # as `sdlcflow audit sink` runs
            sink.run(poll_timeout=0.2)
        sink.close()
    finally:
        cluster.shutdown()


class SinkGroup:
    """`count` sink processes in one consumer group, running until closed."""

    def __init__(self, count: int, ns: str, group: str, args: argparse.Namespace) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.group = group
        self.children = [
            context.Process(
                target=_sink_process,
                args=(ns, group, args.batch, args.max_in_flight, self.stop),
                daemon=True,
            )
            for _ in range(count)
        ]
        for child in self.children:
            child.start()
        self.processes: list[psutil.Process | None] = [
            psutil.Process(child.pid) for child in self.children if child.pid is not None
        ]

    def close(self) -> None:
        self.stop.set()
        for child in self.children:
            child.join(60)
            if child.is_alive():
                child.terminate()
                child.join(10)


def wait_members(admin: AdminClient, group: str, count: int, timeout_s: float) -> None:
    """Until `group` is stable with `count` members, each assigned partitions: a sink that
    joins later would rebalance the group inside a timed round."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = admin.describe_consumer_groups([group])[group].result(30)
        members = found.members or []
        stable = found.state == ConsumerGroupState.STABLE
        if stable and len(members) == count and all(m.assignment.topic_partitions for m in members):
            return
        time.sleep(0.2)
    raise TimeoutError(f"group {group} did not settle on {count} members in {timeout_s} s")


def end_offsets(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        metadata = probe.list_topics(timeout=30).topics
        ends = []
        for topic in topics:
            for partition in metadata[topic].partitions:
                _low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), 30)
                ends.append(TopicPartition(topic, partition, high))
        return ends
    finally:
        probe.close()


def wait_committed(
    bootstrap: str, group: str, ends: list[TopicPartition], timeout_s: float
) -> None:
    """Until the group's committed offsets reach `ends` (every row acknowledged before)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    want = {(tp.topic, tp.partition): tp.offset for tp in ends if tp.offset > 0}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            committed = reader.committed([TopicPartition(t, p) for t, p in want], timeout=30)
            if all(tp.offset >= want[(tp.topic, tp.partition)] for tp in committed):
                return
            time.sleep(0.05)
        raise TimeoutError(f"group {group} did not commit every offset in {timeout_s} s")
    finally:
        reader.close()


def sink_round(
    group: SinkGroup,
    settings: Settings,
    ns: str,
    topics: list[str],
    payloads: list[tuple[str, bytes, bytes]],
    cassandra: psutil.Process | None,
) -> dict[str, Any]:
    """Produce `payloads`, then time until the sinks committed all of them."""
    with cpu_meter(group.processes, cassandra) as took:
        produce(settings.kafka_bootstrap, ns, payloads, None)
        ends = end_offsets(settings.kafka_bootstrap, topics)
        wait_committed(settings.kafka_bootstrap, group.group, ends, 900)
    return _figures(f"sink x{len(group.children)}", len(payloads), None, took)


def ceiling_worker(count: int, in_flight: int, start: Any, results: Any) -> None:
    """One writer of the ceiling: binds its rows, says so, waits for `start`, writes them."""
    settings = Settings.from_env()
    codec = EventCodec()
    cluster, session = connect(settings)
    try:
        store = AuditStore(session, settings.keyspace, max_in_flight=in_flight)
        rows = rows_for(codec, make_events(count, int(time.time() * 1000)))
        writes = group_writes(rows, route=store.route())
        todo = [store.statement(w) for w in writes]
        results.put(0)  # bound: ready
        start.wait()
        while todo:
            todo = _send_all(store, todo)
        results.put(sum(write.events for write in writes))  # a poll's lookups go once
    finally:
        cluster.shutdown()


def ceiling(
    processes: int, count: int, in_flight: int, cassandra: psutil.Process | None
) -> dict[str, Any]:
    """The `after` rows from `processes` writers at once, statements bound beforehand."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    children = [
        context.Process(target=ceiling_worker, args=(count, in_flight, start, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    for _ in children:
        results.get(timeout=900)  # every writer has bound its statements
    watched: list[psutil.Process | None] = [psutil.Process(c.pid) for c in children if c.pid]
    with cpu_meter(watched, cassandra) as took:
        start.set()
        rows = sum(results.get(timeout=900) for _ in children)
    for child in children:
        child.join(60)
    figures = _figures(f"ceiling {processes} writers", processes * count, rows, took)
    return figures | {"in_flight_per_writer": in_flight}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of every phase")
    parser.add_argument("--sinks", type=int, default=2, help="sink processes of the 2nd sink phase")
    parser.add_argument("--rate", type=float, default=2000, help="events/s in the lag phase")
    parser.add_argument("--seconds", type=float, default=20, help="length of the lag phase")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="sink records per poll")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    parser.add_argument("--ceiling-processes", type=int, default=2)
    parser.add_argument("--ceiling-in-flight", type=int, default=64)
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
    cassandra = cassandra_process(settings)
    if cassandra is None:
        print("Cassandra's process is not visible here: its CPU is not measured")
    cluster, session = connect(settings)
    groups: list[SinkGroup] = []
    try:
        store = AuditStore(session, settings.keyspace, max_in_flight=args.max_in_flight)
        sink_counts = sorted({1, args.sinks})
        for count in sink_counts:
            group = SinkGroup(count, ns, f"{ns}-sink{count}", args)
            groups.append(group)
            warm = make_events(1000, int(time.time() * 1000))  # joins the group, fills caches
            sink_round(group, settings, ns, topics, encoded(codec, warm), cassandra)
            group.close()  # one group at a time: the next round starts the group again
        rounds: list[dict[str, Any]] = []
        measured: list[tuple[str, Event]] = []
        for round_no in range(args.rounds):
            for layout in LAYOUTS:
                rounds.append(
                    layout_round(session, settings.keyspace, codec, layout, args.events, cassandra)
                )
                print(f"round {round_no + 1}: {rounds[-1]}", flush=True)
            for count in sink_counts:
                group = SinkGroup(count, ns, f"{ns}-sink{count}", args)
                groups.append(group)
                bulk = make_events(args.events, int(time.time() * 1000))
                measured += bulk
                # the group first settles (all members assigned) and catches up, then is timed
                wait_members(admin, group.group, count, 300)
                sink_round(group, settings, ns, topics, [], cassandra)
                rounds.append(
                    sink_round(group, settings, ns, topics, encoded(codec, bulk), cassandra)
                )
                group.close()
                print(f"round {round_no + 1}: {rounds[-1]}", flush=True)
        loss = verify(session, settings.keyspace, measured)
        print(f"verification: {loss}")
        top = ceiling(args.ceiling_processes, args.events, args.ceiling_in_flight, cassandra)
        print(f"ceiling: {top}")

        steady = make_events(int(args.rate * args.seconds), int(time.time() * 1000))
        sink = AuditSink(
            store,
            bootstrap=settings.kafka_bootstrap,
            group_id=f"{ns}-lag",
            namespace=ns,
            batch_size=args.batch,
            codec=codec,
        )
        sink.run(idle_timeout=2.0, poll_timeout=0.2)  # catches up on the earlier rounds
        sink.stats = type(sink.stats)()
        runner = threading.Thread(
            target=lambda: sink.run(max_records=len(steady), poll_timeout=0.1)
        )
        runner.start()
        produced_s = produce(settings.kafka_bootstrap, ns, encoded(codec, steady), args.rate)
        runner.join(timeout=600)
        lag = sink.stats
        sink.close()
        print(
            f"lag at {len(steady) / produced_s:,.0f} events/s: mean {lag.lag_mean_ms:.0f} ms, "
            f"max {lag.lag_max_ms} ms"
        )
        medians = _medians(rounds)
        rows_after = len(rows_for(codec, measured[:2000])) / 2000
        for name, figures in medians.items():
            print(f"median {name}: {figures}")
        result = {
            "benchmark": "audit_bench",
            "machine": describe_machine(),
            "params": vars(args),
            "rows_per_event_written": {
                "before": round(
                    len(rows_for(codec, measured[:2000], seven_table_placements)) / 2000, 2
                ),
                "after_per_event": round(rows_after, 2),
                "after_one_poll": round(
                    sum(w.events for w in group_writes(rows_for(codec, measured[:2000]))) / 2000, 2
                ),
            },
            "target_events_per_s": 10_000,
            "medians": medians,
            "ratios": _ratios(medians),
            "rounds": rounds,
            "ceiling": top,
            "zero_loss": loss,
            "lag": {
                "rate_events_per_s": round(len(steady) / produced_s),
                "events": lag.stored,
                "mean_ms": round(lag.lag_mean_ms),
                "max_ms": lag.lag_max_ms,
            },
        }
        print(f"ratios: {result['ratios']}")
    finally:
        for group in groups:
            group.close()
        cluster.shutdown()
        admin.delete_topics(topics, operation_timeout=30)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _medians(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    phases: dict[str, list[dict[str, Any]]] = {}
    for figures in rounds:
        phases.setdefault(figures["phase"], []).append(figures)
    return {
        phase: {
            key: statistics.median(r[key] for r in rows)
            for key in rows[0]
            if key not in ("phase", "retries", "in_flight")
        }
        for phase, rows in phases.items()
    }


def _ratios(medians: dict[str, dict[str, float]]) -> dict[str, float]:
    def rate(phase: str) -> float:
        return float(medians.get(phase, {}).get("events_per_s", 0.0))

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b else 0.0

    before, after = "write path before", "write path after"
    sinks = sorted(p for p in medians if p.startswith("sink x"))
    out = {
        "write_path_after_over_before": ratio(rate(after), rate(before)),
        "cassandra_cpu_per_event_after_over_before": ratio(
            medians[after]["cassandra_cpu_us_per_event"],
            medians[before]["cassandra_cpu_us_per_event"],
        ),
    }
    for phase in sinks:
        out[f"{phase.replace(' ', '_')}_over_write_path_after"] = ratio(rate(phase), rate(after))
    if len(sinks) > 1:
        out["sinks_scaling"] = ratio(rate(sinks[-1]), rate(sinks[0]))
    return out


if __name__ == "__main__":
    main()
