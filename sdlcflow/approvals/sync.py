"""Catch the approvals read model up with `sdlc.coordinator`, then stop.

The reader assigns itself every partition at the offset the store last applied (no consumer
group, nothing committed to Kafka: the store's own offsets are the truth), pins the end
offsets when it starts, and reads until it reaches them. One call is one consistent snapshot:
everything the coordinator had decided when the call began is in the store when it returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from sdlcflow.approvals.store import ApprovalStore
from sdlcflow.core.events import Event
from sdlcflow.errors import SdlcflowError
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.topics import COORDINATOR
from sdlcflow.streams.transient import watermarks
from sdlcflow.streams.wire import EventCodec

log = logging.getLogger(__name__)
_BATCH = 500


class SyncError(SdlcflowError):
    """The coordinator's log could not be read to its end in time."""


@dataclass(frozen=True)
class SyncReport:
    applied: int
    skipped: int
    partitions: int


def sync_approvals(
    store: ApprovalStore,
    bootstrap: str,
    *,
    topic: str = COORDINATOR,
    codec: EventCodec | None = None,
    timeout_s: float = 30.0,
) -> SyncReport:
    """Apply every decision on `topic` the store has not seen yet, up to the current end."""
    codec = codec or EventCodec()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # assign() is used, so the group only names the client; nothing is ever committed
            "group.id": "sdlcflow-approvals-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # only decisions the coordinator committed, should it ever write transactionally
            "isolation.level": "read_committed",
        }
    )
    try:
        return _catch_up(consumer, store, topic, codec, timeout_s)
    except KafkaException as exc:
        raise SyncError(
            f"cannot read {topic} from {bootstrap}: {exc}; is Kafka up (`sdlcflow status`)?"
        ) from None
    finally:
        consumer.close()


def _catch_up(
    consumer: Consumer, store: ApprovalStore, topic: str, codec: EventCodec, timeout_s: float
) -> SyncReport:
    deadline = time.monotonic() + timeout_s
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise SyncError(f"topic {topic} does not exist; create the topics with `sdlcflow up`")
    done = store.offsets(topic)
    ends: dict[int, int] = {}
    assignment = []
    for partition in sorted(described.partitions):
        low, high = watermarks(consumer, TopicPartition(topic, partition), deadline=deadline)
        start = max(done.get(partition, low), low)
        if start < high:
            ends[partition] = high
            assignment.append(TopicPartition(topic, partition, start))
    if not assignment:
        return SyncReport(0, 0, len(described.partitions))
    consumer.assign(assignment)
    applied = skipped = 0
    while ends:
        if time.monotonic() > deadline:
            raise SyncError(
                f"read {applied} decisions of {topic} but partitions {sorted(ends)} did not reach "
                f"their end within {timeout_s:.0f} s; try again or raise --timeout"
            )
        batch: list[tuple[Event, str, int, int]] = []
        for message in consumer.consume(_BATCH, 0.5):
            if message.error() is not None:
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if partition not in ends:
                continue
            try:
                batch.append((codec.decode(message.value()), topic, partition, offset))
            except DecodeError as exc:
                log.warning("skipping undecodable %s[%d]@%d: %s", topic, partition, offset, exc)
                store.apply(batch)
                batch = []
                store.skip(topic, partition, offset)
                skipped += 1
            if offset + 1 >= ends[partition]:
                del ends[partition]
        applied += store.apply(batch)
    return SyncReport(applied, skipped, len(described.partitions))
