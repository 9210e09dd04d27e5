"""The audit sink: every event on every sdlcflow topic into Cassandra, exactly once in effect.

One confluent-kafka consumer subscribes by regex to the catalog's topics (so a new
`sdlc.tasks.<capability>` topic is picked up without a restart). Each poll batch is decoded;
undecodable records are dead-lettered to `sdlc.dead-letter` (and those found on the dead-letter
topic itself are stored directly, never re-published); every event becomes its rows
(`rows.placements`), sent by `AuditStore` as token-aware unlogged batches, and the next poll is
decoded while they are in flight. Offsets are committed, batch by batch and in order, only
after Cassandra acknowledged every row of the batch and every dead letter was confirmed,
so a crash or an outage re-delivers, and the idempotent upserts make re-delivery a no-op.
"""

from __future__ import annotations

import functools
import gc
import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sdlcflow.audit.rows import Origin, audit_record, placements
from sdlcflow.audit.store import AuditStore, PendingWrite
from sdlcflow.audit.writes import Row, rows_of
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.errors import SdlcflowError
from sdlcflow.observability import spans
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.consumer import consumer_config, message_headers, refusal, trace_of
from sdlcflow.streams.deadletter import (
    DEAD_LETTER_TYPE,
    MessageDeadLettered,
    dead_letter_id,
)
from sdlcflow.streams.producer import DeliveryError, EventPublisher
from sdlcflow.streams.topics import DEAD_LETTER, TASKS_PREFIX, catalog
from sdlcflow.streams.wire import EventCodec
from sdlcflow.tracing import TraceContext

log = logging.getLogger(__name__)

SINK_GROUP = "sdlcflow-audit"
SINK_ACTOR = Actor(ActorKind.OPS, "sdlcflow-audit-sink")
# records per poll: rows of more events per partition make fewer, larger mutations, and the
# writes of a poll keep Cassandra busy longer between the sink's decoding pauses (8,000 against
# 2,000: 1.11x the events/s, 0.81x Cassandra CPU per event; `benchmarks/audit_sink_ab.py`)
DEFAULT_BATCH = 8000
# how long a poll may wait while a batch is in flight before that batch is settled instead
IN_FLIGHT_POLL_S = 0.05
NAMESPACE = "sdlc"
# CPython collects young objects after every 700 net allocations. A sink keeps about two polls
# of rows alive (tens of thousands of small objects), so each was traversed many times over and
# promoted, and full collections walked the driver's metadata too: about a third of the sink's
# CPU per event (`benchmarks/audit_sink_ab.py`). Young collections every 200,000 allocations,
# full ones rarely, over what startup built frozen out of the collector's view.
SINK_GC_THRESHOLDS = (200_000, 20, 10)


def topic_pattern(namespace: str = NAMESPACE) -> str:
    """The subscription regex: the catalog's fixed topics and every task topic, nothing else.

    Faust changelog and repartition topics are not sdlcflow events and never match. Tests use
    another `namespace` (topics `<namespace>.coordinator`, ...) to stay apart from live traffic.
    """
    fixed = sorted(
        spec.name.removeprefix("sdlc.")
        for spec in catalog()
        if not spec.name.startswith(TASKS_PREFIX)
    )
    names = "|".join(_literal(name) for name in fixed)
    return rf"^{_literal(namespace)}\.({names}|tasks\.[a-z0-9][a-z0-9._-]*)$"


def _literal(text: str) -> str:
    """Topic-name text as a regex literal: only `.` needs escaping in names (librdkafka's
    regex engine is stricter than Python's, so re.escape is not used)."""
    return text.replace(".", "\\.")


@functools.cache
def _compiled_pattern(namespace: str) -> re.Pattern[str]:
    return re.compile(topic_pattern(namespace))


@functools.lru_cache(maxsize=4096)  # asked for every record; topics are few
def is_audited(topic: str, namespace: str = NAMESPACE) -> bool:
    """Whether a topic's records belong in the audit (guards against a too-wide subscription)."""
    return _compiled_pattern(namespace).match(topic) is not None and not topic.endswith(
        ("-changelog", "-repartition")
    )


@contextmanager
def sink_process_gc() -> Iterator[None]:
    """Garbage collection tuned for a process whose work is running a sink (the CLI's), undone
    on exit: what exists now is frozen (never collected), young objects collected rarely."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SINK_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@dataclass
class SinkStats:
    """Counters of one sink run; lag is from the record's Kafka timestamp to its acknowledgement."""

    consumed: int = 0
    stored: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    batches: int = 0
    commit_failures: int = 0
    lag_max_ms: int = 0
    lag_sum_ms: int = 0
    lag_samples: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def lag_mean_ms(self) -> float:
        return self.lag_sum_ms / self.lag_samples if self.lag_samples else 0.0

    def note_lag(self, timestamps: list[int], now_ms: int) -> None:
        for ts in timestamps:
            lag = max(0, now_ms - ts)
            self.lag_max_ms = max(self.lag_max_ms, lag)
            self.lag_sum_ms += lag
            self.lag_samples += 1


@dataclass
class _Batch:
    """One poll's worth of work: rows to store, dead letters to publish, offsets to commit."""

    rows: list[Row] = field(default_factory=list)
    letters: list[Event] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    timestamps: list[int] = field(default_factory=list)
    events: int = 0
    skipped: int = 0
    traced: list[tuple[Envelope, TraceContext | None]] = field(default_factory=list)
    started_ns: int = field(default_factory=time.time_ns)  # when its poll was taken up


@dataclass(frozen=True)
class _Sent:
    """A batch whose rows are in flight: committed once `pending` is acknowledged."""

    batch: _Batch
    consumed: int
    pending: PendingWrite


class AuditSink:
    """Consumes every sdlcflow topic into the audit store.

    Args:
        store: where rows go (prepared, connected).
        bootstrap: Kafka bootstrap servers.
        group_id: consumer group; one group = one audit copy (run several sinks to scale).
        codec: the wire codec (default: current schemas, configured registry).
        publisher: where dead letters of undecodable records go (default: a new one).
        batch_size: records per poll; offsets are committed once per batch.
        config: extra librdkafka consumer settings.
        namespace: topic prefix (`sdlc`); another one reads a separate set of topics.
    """

    def __init__(
        self,
        store: AuditStore,
        *,
        bootstrap: str,
        group_id: str = SINK_GROUP,
        codec: EventCodec | None = None,
        publisher: EventPublisher | None = None,
        batch_size: int = DEFAULT_BATCH,
        config: dict[str, Any] | None = None,
        namespace: str = NAMESPACE,
    ) -> None:
        if batch_size < 1:
            raise SdlcflowError("batch_size must be at least 1")
        self.store = store
        self.group_id = group_id
        self.codec = codec or EventCodec()
        self._bootstrap = bootstrap
        self._publisher = publisher
        self.batch_size = batch_size
        self.stats = SinkStats()
        self.namespace = namespace
        self.dead_letter_topic = DEAD_LETTER.replace("sdlc.", f"{namespace}.", 1)
        self._stop = threading.Event()
        overrides = {
            # larger fetches: the sink reads everything, throughput beats latency here
            "fetch.min.bytes": 65536,
            "fetch.wait.max.ms": 100,
            # new sdlc.tasks.* topics are found within 5 s, not the default 5 min
            "topic.metadata.refresh.interval.ms": 5000,
            **(config or {}),
        }
        self._consumer = Consumer(
            consumer_config(bootstrap, group_id, from_beginning=True, overrides=overrides)
        )
        self._consumer.subscribe([topic_pattern(namespace)])

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            self._publisher = EventPublisher(self._bootstrap, codec=self.codec)
        return self._publisher

    def stop(self) -> None:
        """Finish (or abandon, uncommitted) the current batch and return from `run`."""
        self._stop.set()

    def run(
        self,
        *,
        max_records: int | None = None,
        idle_timeout: float | None = None,
        poll_timeout: float = 0.5,
    ) -> SinkStats:
        """Store records until stopped, `max_records` consumed or `idle_timeout` s of quiet.

        Pipelined: the next poll is decoded while the previous batch's rows are in flight;
        a batch's offsets are committed only once Cassandra acknowledged all of its rows.
        """
        last = time.monotonic()
        sent: _Sent | None = None
        with _stop_on_signals(self._stop):
            while not self._stop.is_set():
                queued = sent.consumed if sent else 0
                if max_records is not None and self.stats.consumed + queued >= max_records:
                    break
                # while a batch is in flight, poll briefly: an empty poll settles it (low lag)
                wait = min(poll_timeout, IN_FLIGHT_POLL_S) if sent else poll_timeout
                messages = self._consumer.consume(self.batch_size, wait)
                good = [m for m in messages if self._usable(m)]
                if good:
                    last = time.monotonic()
                    batch = self._prepare(good)
                    if sent is not None and not self._settle(sent):
                        return self.stats
                    sent = self._send(batch, len(good))
                    if sent is None:
                        return self.stats
                elif sent is not None:
                    if not self._settle(sent):
                        return self.stats
                    sent = None
                elif idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
            if sent is not None and not self._stop.is_set():
                self._settle(sent)
        return self.stats

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() == KafkaError._PARTITION_EOF:
            return False
        if error.fatal():
            raise SdlcflowError(f"fatal Kafka consumer error: {error.str()}")
        log.warning("consumer error (retrying): %s", error.str())
        return False

    def _send(self, batch: _Batch, consumed: int) -> _Sent | None:
        """Publish the batch's dead letters, then send its rows; None when stopped first."""
        if batch.letters and not self._publish_letters(batch.letters):
            return None
        return _Sent(batch, consumed, self.store.send(batch.rows))

    def _settle(self, sent: _Sent) -> bool:
        """Wait for a sent batch's acks, then commit it; False when stopped before the acks."""
        if not sent.pending.wait(self._stop):
            return False
        batch = sent.batch
        now_ms = int(time.time() * 1000)
        self._commit(batch.offsets)
        for envelope, trace in batch.traced:  # one span per event stored (when tracing is on)
            spans.record_span("audit store", envelope, trace, batch.started_ns, time.time_ns())
        self.stats.note_lag(batch.timestamps, now_ms)
        self.stats.consumed += sent.consumed
        self.stats.stored += batch.events
        self.stats.dead_lettered += len(batch.letters)
        self.stats.skipped += batch.skipped
        self.stats.batches += 1
        return True

    def _prepare(self, messages: list[Message]) -> _Batch:
        batch = _Batch()
        offsets, timestamps = batch.offsets, batch.timestamps
        for message in messages:
            topic, partition, offset = (
                message.topic() or "",
                message.partition() or 0,
                message.offset() or 0,
            )
            offsets[(topic, partition)] = offset + 1
            kind, stamp = message.timestamp()
            if kind != 0:
                timestamps.append(stamp)
            if not is_audited(topic, self.namespace):
                batch.skipped += 1
                continue
            origin = Origin(topic, partition, offset, None if kind == 0 else stamp)
            self._one(message, origin, batch)
        return batch

    def _one(self, message: Message, origin: Origin, batch: _Batch) -> None:
        avro = message.value()
        try:
            event = self.codec.decode(avro)
        except DecodeError as exc:
            letter = stored_letter(
                refusal(message, self.group_id, exc.reason.value, exc.detail, exc.schema_id).letter
            )
            if origin.topic == self.dead_letter_topic:
                # garbage on the dead-letter topic itself: store it, never re-publish (no loop)
                self._add(letter, self.codec.encode(letter), origin, batch)
            else:
                batch.letters.append(letter)
            return
        if spans.enabled():
            batch.traced.append((event.envelope, trace_of(message_headers(message))))
        self._add(event, avro or b"", origin, batch)

    def _add(self, event: Event, avro: bytes, origin: Origin, batch: _Batch) -> None:
        batch.rows += rows_of(audit_record(event, avro, origin), placements(event))
        batch.events += 1

    def _publish_letters(self, letters: list[Event]) -> bool:
        delay = 0.2
        while True:
            try:
                for letter in letters:
                    self.publisher.publish(self.dead_letter_topic, letter)
                self.publisher.flush()
                return True
            except DeliveryError as exc:
                log.warning("dead letters not confirmed, retrying: %s", exc)
                if self._stop.wait(delay):
                    return False
                delay = min(5.0, delay * 2)

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # a rebalance took the partitions: the new owner re-reads them, harmlessly
            self.stats.commit_failures += 1
            log.warning("offset commit failed, records will be re-delivered: %s", exc)

    def close(self) -> None:
        """Leave the group; uncommitted records are re-read by the next sink."""
        self._consumer.close()
        if self._publisher is not None:
            self._publisher.flush()

    def __enter__(self) -> AuditSink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def stored_letter(letter: MessageDeadLettered) -> Event:
    """The dead-letter event for a refused record, the same on every redelivery.

    Its id is derived from group/topic/partition/offset, its time is the record's own Kafka
    timestamp and its trace the record's traceparent or one derived from the id, so the
    dead letter written twice (crash before commit) is one row, not two.
    """
    event_id = dead_letter_id(letter.consumer_group, letter.topic, letter.partition, letter.offset)
    trace = trace_of(letter.headers)
    envelope = Envelope(
        event_id=event_id,
        type=DEAD_LETTER_TYPE,
        occurred_at=letter.timestamp if letter.timestamp is not None else 0,
        repo=letter.key.decode("utf-8", "replace") if letter.key else "",
        change_id=None,
        task_id=None,
        trace_id=trace.trace_id if trace else uuid.UUID(event_id).hex,
        causation_id=None,
        actor=SINK_ACTOR,
    )
    return Event(envelope, letter)  # type: ignore[arg-type]  # wire-only payload


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` while the loop runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
