"""Nothing secret leaves its owner: a change runs end to end on the real broker with recognisable
secrets in the agents' and coordinator's environment and in their keys, and none of them shows
up in any topic's bytes, the processes' logs, the artifacts the sandboxed commands produced, the
audit rows the sink's mapping gives for the run, or the rows a real audit sink stored in
Cassandra for it, read back through the analysts' queries."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cassandra.cluster import Session
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from sdlcflow.agents import AgentIdentity, Worker
from sdlcflow.agents.bindings import REFERENCE_AGENTS
from sdlcflow.audit.model import AuditRow
from sdlcflow.audit.queries import AuditReader
from sdlcflow.audit.rows import Origin, audit_record, placements
from sdlcflow.audit.sink import AuditSink, topic_pattern
from sdlcflow.audit.store import AuditStore
from sdlcflow.audit.writes import rows_of
from sdlcflow.core import events as ev
from sdlcflow.demo.services import Services
from sdlcflow.demo.watch import LogWatch, end_offsets, start_group_at_end
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.identity.keys import private_key_pem
from sdlcflow.infra.topics import BrokerFootprint
from sdlcflow.processors.engine import INPUT_TOPICS
from sdlcflow.processors.testing import SignedActor, TestIssuer
from sdlcflow.settings import Settings
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.producer import ChangeRequestProducer, ChangeSpec, EventPublisher
from sdlcflow.streams.topics import (
    AGENT_EVENTS,
    CHANGE_REQUESTS,
    COORDINATOR,
    DEAD_LETTER,
    task_topic,
)
from sdlcflow.streams.wire import EventCodec

pytestmark = pytest.mark.integration

PIPELINE_TIMEOUT_S = 240.0
SECRET_ENV = "DEPLOY_API_TOKEN"
# a test in the change prints its whole environment: if the sandbox leaked, the secret would be
# in the test command's stdout artifact
ENV_DUMP_TEST = b"""import os


def test_environment_is_scrubbed():
    for name, value in sorted(os.environ.items()):
        print(name, value)
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def _pem_body(pem: bytes) -> bytes:
    """The base64 body of a PEM key: what a leak of the key would contain."""
    return b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))


class Run:
    """What the test ran and where its traces are."""

    def __init__(
        self,
        tmp_path: Path,
        repo: str,
        secret: str,
        issuer: TestIssuer,
        footprint: BrokerFootprint,
    ) -> None:
        self.tmp_path, self.repo, self.secret, self.issuer = tmp_path, repo, secret, issuer
        self.footprint = footprint


@pytest.fixture
def run(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    footprint: BrokerFootprint,
) -> Iterator[tuple[Run, Services, SampleRepo]]:
    secret = f"canary-{uuid.uuid4().hex}"
    repo = f"acme/secrets-{uuid.uuid4().hex[:8]}"
    sample = SampleRepo.create(tmp_path / "git")
    env = {
        "SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SDLCFLOW_DATA_DIR": str(tmp_path / "data"),
        "SDLCFLOW_GIT_REMOTES": json.dumps({repo: str(sample.remote)}),
        SECRET_ENV: secret,  # ambient in the coordinator's and the agents' processes
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    issuer = TestIssuer.new()
    trust = issuer.write_trust_file(tmp_path / "trusted-issuers.json")
    app_id = footprint.app(f"test-secrets-{uuid.uuid4().hex[:8]}")
    start_group_at_end(kafka_bootstrap, app_id, INPUT_TOPICS)
    with Services(tmp_path / "logs", env) as services:
        services.start_cli(
            "coordinator",
            [
                *("run", "processors", "--store", "memory", "--app-id", app_id),
                *("--data-dir", str(tmp_path / "processors"), "--trusted-issuers", str(trust)),
                *("--tick-interval-ms", "250", "--loglevel", "debug"),
            ],
            {"SDLCFLOW_PROCESSORS_REPOS": repo},
        )
        yield Run(tmp_path, repo, secret, issuer, footprint), services, sample


def _worker(bootstrap: str, run: Run, signed: SignedActor) -> Worker:
    capabilities = tuple(sorted(REFERENCE_AGENTS))
    group = run.footprint.group(f"test-secrets-agents-{uuid.uuid4().hex[:8]}")
    start_group_at_end(bootstrap, group, [task_topic(c) for c in capabilities])
    return Worker(
        list(REFERENCE_AGENTS.values()),
        bootstrap=bootstrap,
        identity=AgentIdentity(signed.credential, key=signed.key),
        group_id=group,
        concurrency=2,
        repos=(run.repo,),  # the shared broker carries other runs' offers too
    )


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes
    everything: bytes  # key, value and headers


def _read_raw(bootstrap: str, starts: list[TopicPartition]) -> list[RawRecord]:
    """Every record written to the partitions since `starts`, as raw bytes."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"secrets-scan-{uuid.uuid4()}"}
        | {"enable.auto.commit": False}
    )
    ends = {(tp.topic, tp.partition): tp.offset for tp in end_offsets(bootstrap, _topics(starts))}
    pending = {(t.topic, t.partition) for t in starts if ends[(t.topic, t.partition)] > t.offset}
    consumer.assign([tp for tp in starts if (tp.topic, tp.partition) in pending])
    found: list[RawRecord] = []
    deadline = time.monotonic() + 60
    try:
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            where = (message.topic(), message.partition())
            value = message.value() or b""
            headers = b"".join(k.encode() + (v or b"") for k, v in message.headers() or [])
            found.append(
                RawRecord(
                    where[0],
                    where[1],
                    message.offset(),
                    message.timestamp()[1],
                    value,
                    (message.key() or b"") + value + headers,
                )
            )
            if message.offset() + 1 >= ends[where]:
                pending.discard(where)
    finally:
        consumer.close()
    assert not pending, f"could not read back {sorted(pending)} within 60 s"
    return found


def _topics(partitions: list[TopicPartition]) -> list[str]:
    return sorted({tp.topic for tp in partitions})


def _audit_rows(records: list[RawRecord]) -> list[str]:
    """The rows the audit sink writes for these records (its own mapping), as text."""
    codec = EventCodec()
    rows = []
    for record in records:
        try:
            event = codec.decode(record.value)
        except DecodeError:
            continue  # dead letters of foreign bytes: scanned raw above
        origin = Origin(record.topic, record.partition, record.offset, record.timestamp)
        audited = audit_record(event, record.value, origin)
        rows.extend(repr(row) for row in rows_of(audited, placements(event)))
    return rows


@contextmanager
def _audit_sink(
    bootstrap: str, session: Session, keyspace: str, footprint: BrokerFootprint
) -> Iterator[AuditSink]:
    """A real audit sink in a new group placed at the end of every sdlcflow topic, so it
    stores what this run produces (and whatever else runs meanwhile: idempotent upserts)."""
    pattern = re.compile(topic_pattern())
    topics = [t for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(
        timeout=30).topics if pattern.match(t)]  # fmt: skip
    group = footprint.group(f"test-secrets-sink-{uuid.uuid4().hex[:8]}")
    start_group_at_end(bootstrap, group, topics)
    sink = AuditSink(AuditStore(session, keyspace), bootstrap=bootstrap, group_id=group)
    thread = threading.Thread(target=lambda: sink.run(poll_timeout=0.2), daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.stop()
        thread.join(timeout=120)
        sink.close()


def _wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.5)


def _stored_rows(
    reader: AuditReader, records: list[RawRecord], repo: str, since_ms: int
) -> list[AuditRow]:
    """Every audit row of the run that the analysts' queries return: by repository, change,
    task, trace and actor, once the sink has stored every decodable record of the run."""
    codec = EventCodec()
    events = []
    for record in records:
        try:
            events.append(codec.decode(record.value))
        except DecodeError:
            continue
    ids = {e.envelope.event_id for e in events}
    _wait_until(
        lambda: all(reader.by_id(i) is not None for i in ids), 120, "the sink to store the run"
    )
    until_ms = now_ms() + 60_000
    rows = reader.by_repo(repo, since_ms, until_ms)
    for change_id in {e.envelope.change_id for e in events if e.envelope.change_id}:
        rows += reader.by_change(change_id)
    for task_id in {e.envelope.task_id for e in events if e.envelope.task_id}:
        rows += reader.by_task(task_id)
    for trace_id in {e.envelope.trace_id for e in events}:
        rows += reader.by_trace(trace_id)
    for actor_id in {e.envelope.actor.id for e in events}:
        rows += reader.by_actor(actor_id, since_ms, until_ms)
    stored = {row.event_id for row in rows}
    assert ids <= stored, f"{len(ids - stored)} events of the run missing from the queries"
    return rows


class TestNoSecretsLeak:
    """Secrets in the environment and keys never reach events, logs, artifacts or the audit."""

    async def test_a_full_run_leaks_no_secret(
        self,
        kafka_bootstrap: str,
        run: tuple[Run, Services, SampleRepo],
        cassandra_session: Session,
        settings: Settings,
    ) -> None:
        context, services, sample = run
        signed = context.issuer.actor(
            "reference-agents",
            capabilities=tuple(sorted(REFERENCE_AGENTS)),
            repos=(context.repo,),
            environments=("staging", "prod"),
            issued_at=now_ms() - 1_000,
        )
        head = sample.commit(sample.main, "feature", {"tests/test_env_dump.py": ENV_DUMP_TEST})
        spec = ChangeSpec(
            repo=context.repo, base_sha=sample.main, head_sha=head, kind="code",
            template="code-change", title="env dump", paths=("tests/test_env_dump.py",),
            environments=("staging",),
        )  # fmt: skip
        topics = [COORDINATOR, AGENT_EVENTS, CHANGE_REQUESTS, DEAD_LETTER] + [
            task_topic(c) for c in REFERENCE_AGENTS
        ]
        starts = end_offsets(kafka_bootstrap, topics)
        started_ms = now_ms() - 60_000
        sink = _audit_sink(kafka_bootstrap, cassandra_session, settings.keyspace, context.footprint)
        with sink, LogWatch(kafka_bootstrap, context.repo, topics=(COORDINATOR,)) as watch:
            async with _worker(kafka_bootstrap, context, signed):
                with EventPublisher(kafka_bootstrap) as publisher:
                    change_id = ChangeRequestProducer(publisher).submit(spec).change_id
                outcome = await asyncio.to_thread(
                    watch.wait_for,
                    "the change's terminal outcome",
                    # only the promotion: on a shared broker another coordinator serving every
                    # repository may close the same change its own way
                    lambda e: (
                        e.envelope.change_id == change_id
                        and isinstance(e.payload, ev.ChangePromoted)
                    ),
                    timeout_s=PIPELINE_TIMEOUT_S,
                    hint="read the coordinator log under the test's tmp_path/logs",
                    health=services.check,
                )
            assert isinstance(outcome.payload, ev.ChangePromoted), outcome.payload
            records = _read_raw(kafka_bootstrap, starts)
            ours = [r for r in records if context.repo.encode() in r.everything]
            reader = AuditReader(cassandra_session, settings.keyspace)
            stored = await asyncio.to_thread(_stored_rows, reader, ours, context.repo, started_ms)

        secrets = {
            "environment secret": context.secret.encode(),
            "agent private key": _pem_body(private_key_pem(signed.key.private_key)),
            "issuer private key": _pem_body(private_key_pem(context.issuer.key.private_key)),
        }
        assert len(ours) > 20, "the scan must see the run's own records"
        rows = _audit_rows(ours)
        assert rows, "the run's events must map to audit rows"
        assert len(stored) >= len(ours), "every record of the run must be read back stored"
        logs = sorted((context.tmp_path / "logs").glob("*.log"))
        artifacts = [f for f in (context.tmp_path / "data").rglob("*") if f.is_file()]
        assert logs and artifacts
        for name, needle in secrets.items():
            for record in records:
                where = f"{record.topic}@{record.offset}"
                assert needle not in record.everything, f"{name} found in {where}"
            for row in rows:
                assert needle.decode() not in row, f"{name} found in an audit row"
            for stored_row in stored:
                text = repr(stored_row) + repr(stored_row.extra)
                assert needle.decode() not in text, f"{name} found in a stored audit row"
                assert needle not in stored_row.avro, f"{name} found in a stored Avro body"
            for path in [*logs, *artifacts]:
                assert needle not in path.read_bytes(), f"{name} found in {path}"
