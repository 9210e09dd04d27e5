"""Produce the coordinator's records with librdkafka and wait, without blocking the event loop.

One confluent-kafka producer (idempotent, acks=all, batched in C) sends everything the
coordinator writes: its tables' changelog records, decisions, task messages, dead letters and
ticks. (faust's own aiokafka producer cost more CPU per record in Python than the coordinator's
decisions did, and its flush was the longest wait of a batch.) A batch counts as published only
when the broker confirmed every record; failures are retried (with the same bytes, so at worst
duplicated with the same event ids, never lost), and a missing topic — a task topic of a
capability nobody used before — is created on the spot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from sdlcflow.infra.topics import ensure_topics
from sdlcflow.processors.storage import Outbound
from sdlcflow.streams.producer import producer_config
from sdlcflow.streams.topics import TASKS_PREFIX, TopicSpec

log = logging.getLogger(__name__)

_WEEK_MS = 7 * 24 * 3600 * 1000
FLUSH_TIMEOUT_S = 30.0
RETRY_DELAY_S = 1.0

# Where the broker stored the last record of a batch on each (topic, partition).
Offsets = dict[tuple[str, int], int]


class RecordPublisher:
    """Publishes batches of `Outbound` records; `publish` returns once all are confirmed."""

    def __init__(
        self, bootstrap: str, *, client_id: str, partitions: int, max_record_bytes: int = 1_048_576
    ) -> None:
        self.partitions = partitions
        self._bootstrap = bootstrap
        self._producer = Producer(
            producer_config(
                bootstrap,
                {
                    "client.id": client_id,
                    # the coordinator waits for each batch anyway: a short linger suffices
                    "linger.ms": 2,
                    # table values (a repository's whole state) may exceed Kafka's 1 MiB default
                    "message.max.bytes": max_record_bytes,
                },
            )
        )
        self._known_topics: set[str] = set()
        self._lock = threading.Lock()

    async def publish(self, records: Sequence[Outbound]) -> Offsets:
        """Send every record and wait for the broker; retries failures until they succeed.

        Returns the highest offset written per (topic, partition) (changelog positions)."""
        pending = list(records)
        offsets: Offsets = {}
        attempt = 0
        while pending:
            loop = asyncio.get_running_loop()
            failed = await loop.run_in_executor(None, self._send_and_wait, pending, offsets)
            if not failed:
                return offsets
            attempt += 1
            missing = {record.topic for record, error in failed if _unknown_topic(error)}
            if missing:
                await loop.run_in_executor(None, self.ensure_task_topics, missing)
            log.warning(
                "%d of %d records not confirmed (attempt %d, e.g. %s); retrying",
                len(failed),
                len(pending),
                attempt,
                failed[0][1].str(),
            )
            pending = [record for record, _error in failed]
            await asyncio.sleep(min(RETRY_DELAY_S * attempt, 10.0))
        return offsets

    def send_nowait(self, records: Sequence[Outbound]) -> None:
        """Queue records without waiting (ticks: a lost tick is replaced by the next one).

        Runs on the event loop, so it takes no lock: a batch holds the lock while it flushes,
        for up to the delivery timeout when the broker is away, and a tick waiting for it
        stopped the whole worker. librdkafka's produce is thread-safe; a batch's flush then
        waits for these records too, which costs nothing."""
        for record in records:
            self._produce(record, None)
        self._producer.poll(0)

    def _send_and_wait(
        self, records: Sequence[Outbound], offsets: Offsets
    ) -> list[tuple[Outbound, KafkaError]]:
        failed: list[tuple[Outbound, KafkaError]] = []
        with self._lock:
            for record in records:

                def report(
                    error: KafkaError | None, message: Message, record: Outbound = record
                ) -> None:
                    if error is not None:
                        failed.append((record, error))
                        return
                    where = (record.topic, message.partition() or 0)
                    offsets[where] = max(offsets.get(where, -1), message.offset() or 0)

                self._produce(record, report)
            remaining = self._producer.flush(FLUSH_TIMEOUT_S)
            while remaining:
                # every record gets its report within delivery.timeout.ms: wait for it, as a
                # record neither confirmed nor failed must not count as published (the
                # changelog before the decisions)
                log.warning("%d records still in flight after %.0f s", remaining, FLUSH_TIMEOUT_S)
                remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        return failed

    def _produce(self, record: Outbound, report: object) -> None:
        kwargs: dict[str, object] = {
            "value": record.value,
            "key": record.key,
            "headers": list(record.headers),
        }
        if report is not None:
            kwargs["on_delivery"] = report
        if record.partition is not None:
            kwargs["partition"] = record.partition
        while True:
            try:
                self._producer.produce(record.topic, **kwargs)  # type: ignore[arg-type]
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve delivery reports first

    def ensure_task_topics(self, topics: set[str]) -> None:
        """Create missing task topics (same partitions as every sdlcflow topic)."""
        wanted = [t for t in topics if t.startswith(TASKS_PREFIX) and t not in self._known_topics]
        if not wanted:
            return
        specs = [
            TopicSpec(name, self.partitions, {"retention.ms": str(_WEEK_MS)}) for name in wanted
        ]
        try:
            ensure_topics(AdminClient({"bootstrap.servers": self._bootstrap}), specs)
            self._known_topics.update(wanted)
        except Exception:
            log.exception("could not create task topics %s; will retry", wanted)

    def close(self) -> None:
        self._producer.flush(5.0)


def _unknown_topic(error: KafkaError) -> bool:
    return error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
