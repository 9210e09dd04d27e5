"""The audit sink stores every event of every topic exactly once, survives a Cassandra outage,
and the analyst queries and commands read back what it wrote."""

from __future__ import annotations

import csv
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from cassandra.cluster import Session
from cassandra.query import BoundStatement
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sdlcflow.audit.commands import audit, report
from sdlcflow.audit.model import AuditRow
from sdlcflow.audit.queries import AuditReader
from sdlcflow.audit.rows import Origin, audit_record, placements, render_json
from sdlcflow.audit.sink import AuditSink, SinkStats, is_audited, topic_pattern
from sdlcflow.audit.store import AuditStore, connect
from sdlcflow.audit.tables import TABLES
from sdlcflow.audit.writes import rows_of
from sdlcflow.core.events import (
    Actor,
    ActorKind,
    ApprovalAccepted,
    ApprovalSigned,
    Event,
    PolicyDecision,
    PolicyEvaluated,
    VerifiedState,
)
from sdlcflow.infra import local
from sdlcflow.settings import Settings
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.testing import sample_event
from sdlcflow.streams.topics import catalog
from sdlcflow.streams.wire import EventCodec, event_types

STATE = VerifiedState(head_sha="a" * 40, base_sha="b" * 40, policy_revision="rev-1")


def namespaced(namespace: str, topic: str) -> str:
    return topic.replace("sdlc.", f"{namespace}.", 1)


def create_topics(admin: AdminClient, namespace: str, partitions: int = 3) -> list[str]:
    """The catalog's topics under `namespace` (e.g. `<ns>.coordinator`), created and led."""
    names = [namespaced(namespace, spec.name) for spec in catalog()]
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names], operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)
    return names


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Events of one run: the same trace, change and repo, every type, one per ms."""

    repo: str
    trace_id: str
    change_id: str
    task_id: str
    agent: str
    reviewer: str
    policy: str
    events: tuple[Event, ...]


def scenario(start_ms: int, tag: str) -> Scenario:
    """One event of every type (sample payloads) plus meaningful policy and approval events."""
    trace, change = uuid.uuid4().hex, str(uuid.uuid4())
    repo, task = f"acme/{tag}", f"{change}/lint"
    agent, reviewer, policy = f"agent-{tag}", f"reviewer-{tag}", f"policy_{tag}"
    out: list[Event] = []
    for i, event_type in enumerate(sorted(event_types())):
        if event_type == "MessageDeadLettered":
            continue  # dead letters come from real refusals in the tests
        base = sample_event(event_type, repo=repo, trace_id=trace)
        kind = ActorKind.AGENT if event_type in {"TaskFailed", "TaskSucceeded"} else None
        actor = Actor(kind, agent) if kind else base.envelope.actor
        envelope = dataclasses.replace(
            base.envelope,
            occurred_at=start_ms + i,
            change_id=change,
            task_id=task,
            actor=actor,
        )
        out.append(Event(envelope, base.payload))
    n = len(out)
    policy_eval = PolicyEvaluated(
        PolicyDecision.FAIL, True, STATE, "sha256:ev", (f"{policy}: touches auth/",)
    )
    signed = ApprovalSigned(STATE, "sha256:ev", "lgtm")
    accepted = ApprovalAccepted(reviewer, 1, 1, STATE, "sha256:ev")
    for j, (payload, actor) in enumerate(
        (
            (policy_eval, Actor(ActorKind.COORDINATOR, "coordinator")),
            (signed, Actor(ActorKind.HUMAN, reviewer)),
            (accepted, Actor(ActorKind.COORDINATOR, "coordinator")),
        )
    ):
        base = sample_event(type(payload).__name__, repo=repo, trace_id=trace)
        envelope = dataclasses.replace(
            base.envelope,
            occurred_at=start_ms + n + j,
            change_id=change,
            task_id=task,
            actor=actor,
        )
        out.append(Event(envelope, payload))  # type: ignore[arg-type]
    return Scenario(repo, trace, change, task, agent, reviewer, policy, tuple(out))


def topic_for(namespace: str, event: Event) -> str:
    """Inputs on agent-events / change-requests, decisions on the coordinator log."""
    kind = event.envelope.type
    if kind.startswith("Change") and kind in {
        "ChangeRequested",
        "ChangeUpdated",
        "ChangeCancelled",
    }:
        return f"{namespace}.change-requests"
    if kind in {"Tick"}:
        return f"{namespace}.ticks"
    if kind in {
        "LeaseRequested",
        "LeaseHeartbeat",
        "LeaseReleased",
        "TaskSucceeded",
        "TaskFailed",
        "ApprovalSigned",
        "ApprovalRejected",
        "CredentialRevoked",
        "PolicyModeChanged",
    }:
        return f"{namespace}.agent-events"
    return f"{namespace}.coordinator"


def publish(bootstrap: str, namespace: str, events: tuple[Event, ...]) -> None:
    publisher = EventPublisher(bootstrap)
    for event in events:
        publisher.publish(topic_for(namespace, event), event)
    publisher.flush()


def publish_garbage(bootstrap: str, topic: str, values: list[bytes]) -> None:
    publisher = EventPublisher(bootstrap)
    for value in values:
        publisher.publish_raw(topic, b"acme/garbage", value, [], label="garbage")
    publisher.flush()


@contextmanager
def running_sink(
    store: AuditStore, bootstrap: str, namespace: str, group: str
) -> Iterator[tuple[AuditSink, Callable[[], SinkStats]]]:
    """A sink consuming in a background thread; stopped (and joined) on exit."""
    sink = AuditSink(
        store,
        bootstrap=bootstrap,
        group_id=group,
        namespace=namespace,
        batch_size=500,
        config={"topic.metadata.refresh.interval.ms": 1000},
    )
    result: list[SinkStats] = []
    thread = threading.Thread(target=lambda: result.append(sink.run(poll_timeout=0.2)))
    thread.start()
    try:
        yield sink, lambda: sink.stats
    finally:
        sink.stop()
        thread.join(timeout=120)
        sink.close()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.2)


def row_counts(session: Session, keyspace: str, event: Event, topic: str) -> dict[str, int]:
    """How many rows of `event` each table it belongs to holds (expected: 1 each)."""
    record = audit_record(event, b"", Origin(topic, 0, 0))
    counts: dict[str, int] = {}
    for row in rows_of(record, placements(event)):
        spec = TABLES[row.table]
        where = " AND ".join(f"{name} = ?" for name in spec.partition_key + spec.clustering)
        query = session.prepare(f"SELECT count(*) FROM {keyspace}.{row.table} WHERE {where}")
        bound = BoundStatement(query)
        bound.values = list(row.key)  # the key's bytes exactly as the sink wrote them
        found = session.execute(bound).one()[0]
        label = row.table if row.table not in counts else f"{row.table}#{len(counts)}"
        counts[label] = int(found)
    return counts


def stored_once(session: Session, keyspace: str, event: Event, topic: str) -> bool:
    return all(n == 1 for n in row_counts(session, keyspace, event, topic).values())


# --------------------------------------------------------------------------------------------
# Fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace(admin: AdminClient, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A private copy of the topic catalog (`<ns>.coordinator`, ...), deleted afterwards."""
    ns = unique_name("audit")
    names = create_topics(admin, ns)
    yield ns
    extra = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{ns}.")]
    admin.delete_topics(sorted(set(names) | set(extra)), operation_timeout=30)


@pytest.fixture
def store(settings: Settings) -> Iterator[AuditStore]:
    """A store on its own connection (quick reconnection after an outage)."""
    cluster, session = connect(settings)
    try:
        yield AuditStore(session, settings.keyspace, max_in_flight=64)
    finally:
        cluster.shutdown()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _all_stored(session: Session, keyspace: str, ns: str, events: tuple[Event, ...]) -> bool:
    return all(stored_once(session, keyspace, e, topic_for(ns, e)) for e in events)


def _letters(session: Session, keyspace: str, day: date, origin_topic: str) -> list[AuditRow]:
    """Dead letters of `day` refused on `origin_topic`, their bodies joined from events_by_id."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    letters = AuditReader(session, keyspace).dead_letters(start, start + 86_400_000)
    return [r for r in letters if r.extra["origin_topic"] == origin_topic]


# --------------------------------------------------------------------------------------------
# Tests


class TestSinkStoresEveryEventOnce:
    """Every event lands exactly once in every table it belongs to, even when re-read."""

    def test_mixed_events_land_once_in_each_of_their_tables(
        self,
        namespace: str,
        store: AuditStore,
        kafka_bootstrap: str,
        cassandra_session: Session,
        settings: Settings,
    ) -> None:
        run = scenario(_now_ms(), namespace)
        publish(kafka_bootstrap, namespace, run.events)
        with running_sink(store, kafka_bootstrap, namespace, f"{namespace}-sink") as (_, stats):
            wait_until(lambda: stats().stored >= len(run.events), 90, "the sink to store all")
        for event in run.events:
            counts = row_counts(
                cassandra_session, settings.keyspace, event, topic_for(namespace, event)
            )
            assert set(counts.values()) == {1}, (event.envelope.type, counts)
        policy_event = next(e for e in run.events if isinstance(e.payload, PolicyEvaluated))
        tables = row_counts(
            cassandra_session, settings.keyspace, policy_event, f"{namespace}.coordinator"
        )
        assert "policy_decisions_by_policy_day" in tables
        assert stats().stored == len(run.events)

    def test_replaying_every_topic_from_the_start_writes_nothing_twice(
        self,
        namespace: str,
        store: AuditStore,
        kafka_bootstrap: str,
        cassandra_session: Session,
        settings: Settings,
    ) -> None:
        run = scenario(_now_ms(), namespace)
        publish(kafka_bootstrap, namespace, run.events)
        for attempt in ("first", "replay"):
            group = f"{namespace}-{attempt}"  # a fresh group re-reads everything from offset 0
            with running_sink(store, kafka_bootstrap, namespace, group) as (_, stats):
                wait_until(lambda: stats().stored >= len(run.events), 90, f"{attempt} pass")
        assert _all_stored(cassandra_session, settings.keyspace, namespace, run.events)
        event = run.events[0]
        written = cassandra_session.execute(
            f"SELECT writetime(avro) FROM {settings.keyspace}.events_by_id WHERE event_id = %s",
            (event.event_id,),
        ).one()[0]
        assert written // 1000 == event.occurred_at  # USING TIMESTAMP from the event time

    def test_undecodable_records_become_one_dead_letter_each_with_their_bytes(
        self,
        namespace: str,
        store: AuditStore,
        kafka_bootstrap: str,
        cassandra_session: Session,
        settings: Settings,
    ) -> None:
        garbage = [b"not avro at all", b"\x00\x00\x00\x00\x07trunc"]
        publish_garbage(kafka_bootstrap, f"{namespace}.agent-events", garbage)
        publish_garbage(kafka_bootstrap, f"{namespace}.dead-letter", [b"garbage on the DLQ"])
        with running_sink(store, kafka_bootstrap, namespace, f"{namespace}-sink") as (_, stats):
            # 3 raw records + the 2 dead letters the sink published for the agent-events ones
            wait_until(lambda: stats().consumed >= 5, 90, "raw records and their dead letters")
        today = datetime.now(UTC).date()
        refused = _letters(cassandra_session, settings.keyspace, today, f"{namespace}.agent-events")
        on_dlq = _letters(cassandra_session, settings.keyspace, today, f"{namespace}.dead-letter")
        assert sorted(r.extra["origin_offset"] for r in refused) == [0, 1]  # one partition
        reasons = {r.extra["reason"] for r in refused}
        assert reasons <= {"not-wire-format", "unknown-schema-id", "truncated"}
        assert len(on_dlq) == 1
        codec = EventCodec()
        values = sorted(codec.decode(r.avro).payload.value for r in refused)  # type: ignore[union-attr]
        assert values == sorted(garbage)

    def test_a_new_task_topic_is_picked_up_without_a_restart(
        self,
        namespace: str,
        admin: AdminClient,
        store: AuditStore,
        kafka_bootstrap: str,
        cassandra_session: Session,
        settings: Settings,
    ) -> None:
        run = scenario(_now_ms(), namespace)
        event = run.events[0]
        topic = f"{namespace}.tasks.brand-new-capability"
        with running_sink(store, kafka_bootstrap, namespace, f"{namespace}-sink") as (_, stats):
            for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
                future.result(timeout=60)
            publisher = EventPublisher(kafka_bootstrap)
            publisher.publish(topic, event)
            publisher.flush()
            wait_until(lambda: stats().stored >= 1, 90, "the event on the new topic")
        assert stored_once(cassandra_session, settings.keyspace, event, topic)


class TestSubscription:
    """The real subscription covers the catalog and task topics and nothing else."""

    def test_librdkafka_accepts_the_pattern_and_assigns_catalog_topics(
        self, kafka_bootstrap: str, unique_name: Callable[[str], str]
    ) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": unique_name("audit-sub"),
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
            }
        )
        assigned: list[str] = []
        consumer.subscribe(
            [topic_pattern()], on_assign=lambda _c, parts: assigned.extend(p.topic for p in parts)
        )
        try:
            wait_until(lambda: bool(consumer.poll(0.2)) or bool(assigned), 60, "an assignment")
        finally:
            consumer.close()
        names = set(assigned)
        assert {"sdlc.coordinator", "sdlc.agent-events", "sdlc.dead-letter"} <= names
        assert "sdlc.tasks.lint" in names
        assert all(is_audited(name) for name in names)


class TestOutage:
    """Cassandra stopped mid-run: nothing is committed, then the sink catches up, losing nothing."""

    @pytest.mark.timeout(900)
    def test_sink_catches_up_after_cassandra_returns(
        self,
        namespace: str,
        store: AuditStore,
        kafka_bootstrap: str,
        settings: Settings,
        cassandra_session: Session,
    ) -> None:
        before = scenario(_now_ms(), f"{namespace}a")
        during = scenario(_now_ms() + 10_000, f"{namespace}b")
        group = f"{namespace}-sink"
        publish(kafka_bootstrap, namespace, before.events)
        with running_sink(store, kafka_bootstrap, namespace, group) as (_, stats):
            wait_until(lambda: stats().stored >= len(before.events), 90, "the first batch")
            assert local.stop_server(settings, "cassandra"), "Cassandra was not running"
            try:
                publish(kafka_bootstrap, namespace, during.events)
                wait_until(lambda: store.stats.retries > 0, 120, "writes to fail and be retried")
                committed = _committed(kafka_bootstrap, group, namespace)
                # nothing unacknowledged was committed; fewer may be, when a busy group
                # coordinator refused the last commit (it is retried, the records re-delivered)
                assert committed <= len(before.events)
            finally:
                local.start_server(settings, "cassandra", timeout_s=300)
            total = len(before.events) + len(during.events)
            wait_until(lambda: stats().stored >= total, 300, "the sink to catch up")
        cluster, session = connect(settings)
        try:
            assert _all_stored(session, settings.keyspace, namespace, before.events + during.events)
        finally:
            cluster.shutdown()
        assert _committed(kafka_bootstrap, group, namespace) == total
        # the suite's shared session reconnects too, before the next test relies on it
        wait_until(lambda: _answers(cassandra_session), 120, "the shared session to reconnect")


def _answers(session: Session) -> bool:
    try:
        session.execute("SELECT release_version FROM system.local")
    except Exception:  # NoHostAvailable, OperationTimedOut: not back yet
        return False
    return True


def _committed(bootstrap: str, group: str, namespace: str) -> int:
    """Records committed by `group` over the scenario's topics."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [
            TopicPartition(f"{namespace}.{name}", p)
            for name in ("change-requests", "agent-events", "coordinator", "ticks")
            for p in range(3)
        ]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30))
    finally:
        consumer.close()


class TestAnalystQueries:
    """The analyst queries and commands return what the sink wrote."""

    def test_queries_and_commands_return_the_stored_events(
        self,
        namespace: str,
        store: AuditStore,
        kafka_bootstrap: str,
        cassandra_session: Session,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        start = _now_ms()
        run = scenario(start, namespace)
        publish(kafka_bootstrap, namespace, run.events)
        with running_sink(store, kafka_bootstrap, namespace, f"{namespace}-sink") as (_, stats):
            wait_until(lambda: stats().stored >= len(run.events), 90, "the sink to store all")
        ids = {e.event_id for e in run.events}
        reader = AuditReader(cassandra_session, settings.keyspace)
        since, until = start - 1000, start + 60_000
        assert {r.event_id for r in reader.by_trace(run.trace_id)} == ids
        assert {r.event_id for r in reader.by_change(run.change_id)} == ids
        assert {r.event_id for r in reader.by_task(run.task_id)} == ids
        assert {r.event_id for r in reader.by_repo(run.repo, since, until)} == ids
        assert {r.event_type for r in reader.by_actor(run.agent, since, until)} == {
            "TaskFailed",
            "TaskSucceeded",
        }
        (decision,) = reader.by_policy(run.policy, since, until)
        assert decision.extra["decision"] == "FAIL"
        assert {r.event_type for r in reader.by_reviewer(run.reviewer, since, until)} == {
            "ApprovalSigned",
            "ApprovalAccepted",
        }
        timeline = reader.by_trace(run.trace_id)
        assert [r.occurred_at for r in timeline] == sorted(e.occurred_at for e in run.events)
        by_id = {e.event_id: e for e in run.events}
        for row in timeline:  # no JSON is stored: each row's is rendered from its Avro bytes
            assert row.json == render_json(by_id[row.event_id]), row.event_type

        cli = CliRunner()
        env = {"SDLCFLOW_CASSANDRA_HOSTS": ",".join(settings.cassandra_hosts)}
        env["SDLCFLOW_CASSANDRA_PORT"] = str(settings.cassandra_port)
        env["SDLCFLOW_KEYSPACE"] = settings.keyspace
        traced = cli.invoke(audit, ["trace", run.trace_id, "--json"], env=env)
        assert traced.exit_code == 0, traced.output
        steps = orjson.loads(traced.output)["steps"]
        assert [s["event_id"] for s in steps] == [r.event_id for r in timeline]
        assert steps[1]["since_previous_ms"] == timeline[1].occurred_at - timeline[0].occurred_at
        window = ["--since", "2m"]
        for fmt in ("csv", "jsonl", "parquet"):
            out = tmp_path / f"export.{fmt}"
            exported = cli.invoke(
                audit,
                ["export", *window, "--format", fmt, "--out", str(out), "--json"],
                env=env,
            )
            assert exported.exit_code == 0, exported.output
            assert ids <= _exported_ids(out, fmt)
        reported = cli.invoke(
            report, [*window, "--json", "--png", str(tmp_path / "r.png")], env=env
        )
        assert reported.exit_code == 0, reported.output
        summary = orjson.loads(reported.output)
        assert summary["policy_evaluations"] >= 1
        assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _exported_ids(out: Path, fmt: str) -> set[str]:
    if fmt == "parquet":
        return set(pq.read_table(out, columns=["event_id"]).column("event_id").to_pylist())
    if fmt == "csv":
        with out.open(newline="") as handle:
            return {row["event_id"] for row in csv.DictReader(handle)}
    return {orjson.loads(line)["event_id"] for line in out.read_text().splitlines()}
