"""The thin reader behind the invariant checks: what the topics and the audit store hold.

Reads every audited topic of the run's private broker from its first record to the end it
had when reading began, and the event ids of the private audit store, so the checks in
`invariants` see the evidence exactly as an outside auditor would.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from cassandra import DriverException
from cassandra.cluster import Session
from cassandra.query import SimpleStatement
from confluent_kafka import Consumer, Message, TopicPartition

from sdlcflow.audit.sink import is_audited
from sdlcflow.core.events import Event
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.topics import COORDINATOR
from sdlcflow.streams.transient import DEADLINE_S, watermarks
from sdlcflow.streams.wire import EventCodec

_TIMEOUT_S = 30.0
_IDLE_POLLS = 10
_SCAN_PAGE = 1000
_SCAN_ATTEMPTS = 5


@dataclass
class TopicEvidence:
    """Everything the audited topics held: ids per topic, the decisions, undecodable records."""

    event_ids: set[str] = field(default_factory=set)
    records: Counter[str] = field(default_factory=Counter)
    decisions: list[Event] = field(default_factory=list)
    undecodable: int = 0


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sdlcflow-chaos-reader-{uuid.uuid4().hex[:8]}",
            # we assign partitions and never commit: reading leaves no trace in the cluster
            "enable.auto.commit": False,
            # outages are expected here: librdkafka's reconnect chatter is not news
            "log_level": 0,
        }
    )


def audited_topics(bootstrap: str) -> list[str]:
    """The broker's topics whose records belong in the audit store."""
    consumer = _consumer(bootstrap)
    try:
        names = consumer.list_topics(timeout=_TIMEOUT_S).topics
        return sorted(name for name in names if is_audited(name))
    finally:
        consumer.close()


def read_records(bootstrap: str, topics: list[str]) -> Iterator[Message]:
    """Every record of `topics`, up to the end each partition had when reading began (all
    partitions at once: one pass, however many topics)."""
    consumer = _consumer(bootstrap)
    try:
        metadata = consumer.list_topics(timeout=_TIMEOUT_S).topics
        ends: dict[tuple[str, int], int] = {}
        starts = []
        deadline = time.monotonic() + DEADLINE_S
        for topic in topics:
            for partition in sorted(metadata[topic].partitions) if topic in metadata else []:
                low, high = watermarks(
                    consumer, TopicPartition(topic, partition), deadline=deadline
                )
                if high > low:
                    ends[(topic, partition)] = high
                    starts.append(TopicPartition(topic, partition, low))
        if not starts:
            return
        consumer.assign(starts)
        idle = 0
        while ends and idle < _IDLE_POLLS:  # offset gaps (markers) can hide the last offsets
            messages = consumer.consume(1000, timeout=1.0)
            idle = 0 if messages else idle + 1
            for message in messages:
                if message.error() is not None:
                    continue
                where = (message.topic() or "", message.partition() or 0)
                end = ends.get(where)
                if end is None or (message.offset() or 0) >= end:
                    continue
                yield message
                if (message.offset() or 0) + 1 >= end:
                    del ends[where]
    finally:
        consumer.close()


def read_topics(bootstrap: str) -> TopicEvidence:
    """Decode every audited topic; the coordinator's decisions are kept in log order."""
    codec = EventCodec()
    evidence = TopicEvidence()
    for message in read_records(bootstrap, audited_topics(bootstrap)):
        topic = message.topic() or ""
        evidence.records[topic] += 1
        try:
            event = codec.decode(message.value())
        except DecodeError:
            evidence.undecodable += 1  # the sink dead-letters it; the letter is checked
            continue
        evidence.event_ids.add(event.event_id)
        if topic == COORDINATOR:
            evidence.decisions.append(event)
    return evidence


def _scan(session: Session, query: str) -> list[str]:
    """The event ids a full scan returns, in small pages, retried: a node that has just
    restarted on a loaded machine fails the odd page (ReadFailure, timeouts)."""
    for attempt in range(_SCAN_ATTEMPTS):
        try:
            statement = SimpleStatement(query, fetch_size=_SCAN_PAGE)
            return [row.event_id for row in session.execute(statement, timeout=60.0)]
        except DriverException:
            if attempt == _SCAN_ATTEMPTS - 1:
                raise
            time.sleep(5.0)
    return []


def stored_event_ids(session: Session, keyspace: str) -> list[str]:
    """Every event id in the audit store's by-id table (one row per id by its key)."""
    return _scan(session, f"SELECT event_id FROM {keyspace}.events_by_id")


def change_rows(session: Session, keyspace: str) -> Counter[str]:
    """Rows per event id in the by-change table: more than one is a duplicate."""
    return Counter(_scan(session, f"SELECT event_id FROM {keyspace}.events_by_change"))
