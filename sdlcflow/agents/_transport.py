"""The Kafka side of a Worker: an async publisher and two consumer threads on the task topics.

- offers: a consumer-group subscription to `sdlc.tasks.<capability>`; it hands offers to the
  event loop only while the worker has free slots, and commits the offsets the loop says are
  safe. Offers polled beyond the free slots are held, in order, until slots free; up to a
  backlog of them is read ahead, and only past that are the partitions paused (the poll loop
  keeps the group membership alive), to be resumed once half the backlog is worked off.
  Pausing whenever every slot was busy cost a second per slot cycle: librdkafka purges a
  paused partition's prefetched messages and, with every partition paused, starts the resumed
  fetch only at its broker thread's next wake-up, ~1 s later (64 slots took 64 offers/s).
  librdkafka keeps a partition's pause across a rebalance when the partition stays assigned and
  starts a newly assigned one unpaused, so after every assignment the pause or resume is
  applied anew to the whole assignment.
  Messages it skips (decisions, other repositories' offers) take no slot: only their offsets
  travel to the loop, so a busy shared topic cannot crowd out this worker's offers.
- follower: a group-less assignment of every partition of the same task topics, from their end
  at start-up. The coordinator routes every decision about a task (grant, denial, extension,
  revocation, expiry, verdict) to its capability's task topic, so this sees them even when a
  rebalance moves the offer's partition to another agent, without decoding the whole
  decisions log.

Both skip, by the 5-byte frame header and without decoding, the event types they do not act
on. confluent-kafka calls block, so each consumer polls in its own thread and passes decoded
events to the loop with `call_soon_threadsafe`; the producer is served by a third small thread.
"""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from sdlcflow.agents._errors import AgentError
from sdlcflow.core.events import Event
from sdlcflow.streams import transient
from sdlcflow.streams.consumer import Delivery, Refusal, decode_message
from sdlcflow.streams.producer import DeliveryError, producer_config, trace_headers
from sdlcflow.streams.wire import EventCodec, record_name

log = logging.getLogger("sdlcflow.agents.transport")

POLL_S = 0.05  # short polls keep shutdown and pause/resume responsive
MAX_BATCH = 500  # messages handed to the loop at once
# Offers read ahead of the free slots before the partitions are paused: enough to keep a busy
# worker fed through the second a resumed fetch takes, small in memory (a few KB per offer).
OFFER_BACKLOG = 2048
# Messages held behind a waiting offer, per offer of backlog: on a topic shared with other
# repositories' traffic most are skipped decisions, and they must not pile up without bound
# while every slot is busy.
HELD_PER_OFFER = 8
METADATA_TIMEOUT_S = 10.0

# The offer consumer pauses its partitions while every slot is busy. The broker answers a
# fetch as soon as one byte is there (fetch.min.bytes=1), but a resumed partition joins only
# the next fetch request, after the one in flight returns: up to fetch.wait.max.ms (500 ms by
# default) when the other partitions are idle. 50 ms bounds that wait at 20 idle fetches/s.
# A dead agent's offers move to a live member once its session lapses: librdkafka's 45 s
# default kept a killed agent's partitions idle for 28-62 s in the chaos runs.
OFFER_CONSUMER_CONFIG: dict[str, Any] = {
    "fetch.wait.max.ms": 50,
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 3_000,
}


@dataclass(frozen=True)
class Skipped:
    """A message the consumer did not decode (not an offer, or another repository's): only its
    position, so the offset can still be committed in order."""

    topic: str
    partition: int
    offset: int


OfferBatch = list[Delivery | Refusal | Skipped]
Partitions = list[tuple[str, int]]


def frame_headers(codec: EventCodec, event_types: Iterable[str]) -> frozenset[bytes]:
    """The 5-byte frame headers of the current schemas of `event_types` (to skip them unread;
    frames of older schema versions are decoded and filtered by type instead)."""
    return frozenset(codec.codec.header(record_name(t)) for t in event_types)


def repo_matcher(patterns: Sequence[str]) -> Callable[[bytes | None], bool]:
    """Does a message key (the repository) match one of the glob `patterns`? (none: all do)"""
    if not patterns:
        return lambda _key: True
    # one alternation, matched once per message (both consumers ask for every message read)
    match = re.compile(b"|".join(fnmatch.translate(p).encode() for p in patterns)).match

    def matches(key: bytes | None) -> bool:
        return key is not None and match(key) is not None

    return matches


def agent_producer_config(
    bootstrap: str, actor_id: str, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The streams producer settings, tuned for an agent's small latency-bound messages."""
    config = producer_config(bootstrap)
    config.update(
        {
            "client.id": f"sdlcflow-agent-{actor_id}",
            # lease requests and heartbeats are latency-bound round trips: send within 1 ms
            "linger.ms": 1,
            # a heartbeat that cannot be delivered within a lease TTL is useless; fail fast
            "delivery.timeout.ms": 10_000,
        }
    )
    config.update(overrides or {})
    return config


class AsyncPublisher:
    """Publishes events and lets coroutines await the broker's confirmation of each one."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        codec: EventCodec,
        config: Mapping[str, Any],
    ) -> None:
        self._loop = loop
        self._codec = codec
        self._producer = Producer(dict(config))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sdlcflow-agent-producer")
        self._thread.daemon = True
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(POLL_S)

    def send(self, topic: str, event: Event) -> asyncio.Future[None]:
        """Queue `event` (keyed by repo); the future resolves when the broker confirms it."""
        future: asyncio.Future[None] = self._loop.create_future()
        label = f"{event.envelope.type} {event.envelope.event_id}"

        def report(error: KafkaError | None, _message: Message) -> None:
            self._loop.call_soon_threadsafe(_settle, future, error, label, topic)

        value = self._codec.encode(event)
        key = event.envelope.repo.encode("utf-8")
        while True:
            try:
                headers: list[tuple[str, str | bytes | None]] = list(trace_headers(event))
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=report
                )
                return future
            except BufferError:
                self._producer.poll(0.01)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise DeliveryError(f"cannot queue {label} for {topic}: {exc}") from exc

    async def publish(self, topic: str, event: Event) -> None:
        await self.send(topic, event)

    def close(self, timeout_s: float = 10.0) -> None:
        remaining = self._producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout=2.0)
        if remaining:
            log.warning("%d event(s) unconfirmed at shutdown", remaining)


def _settle(future: asyncio.Future[None], error: KafkaError | None, label: str, topic: str) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryError(f"{label} -> {topic}: {error.str()}"))


def _poll_batch(consumer: Consumer, limit: int) -> list[Message]:
    """One message within POLL_S, then whatever else is already buffered (no waiting)."""
    first = consumer.poll(POLL_S)
    if first is None:
        return []
    batch = [first]
    while len(batch) < limit:
        more = consumer.poll(0)
        if more is None:
            break
        batch.append(more)
    return batch


def _origin(item: Delivery | Refusal | Skipped) -> tuple[str, int]:
    """The topic and partition a polled item came from."""
    if isinstance(item, Refusal):
        return (item.letter.topic, item.letter.partition)
    return (item.topic, item.partition)


def _check_error(message: Message) -> bool:
    """True when the message is a real record; logs or raises for errors."""
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    if error.fatal():
        raise AgentError(f"fatal Kafka consumer error: {error.str()}")
    log.warning("consumer error (retrying): %s", error.str())
    return False


class OfferConsumer:
    """The consumer-group thread for offers: flow control by free slots, loop-driven commits."""

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        topics: Sequence[str],
        codec: EventCodec,
        group_id: str,
        slots: int,
        deliver: Callable[[OfferBatch], None],
        revoked: Callable[[Partitions], None],
        skip: frozenset[bytes] = frozenset(),
        wanted_repo: Callable[[bytes | None], bool] = lambda _key: True,
        backlog: int = OFFER_BACKLOG,
    ) -> None:
        self._consumer = Consumer({**OFFER_CONSUMER_CONFIG, **config})
        self._backlog = backlog
        self._held_cap = HELD_PER_OFFER * max(backlog, 1)
        self._skip = skip
        self._wanted_repo = wanted_repo
        self._topics = list(topics)
        self._codec = codec
        self._group_id = group_id
        self._deliver = deliver
        self._revoked = revoked
        self._free = slots
        self._lock = threading.Lock()
        self._commits: queue.SimpleQueue[dict[tuple[str, int], int]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._accepting = True
        self._paused = False
        self._assigned = False  # a new assignment: pause or resume it whatever `_paused` says
        self._held: collections.deque[Delivery | Refusal | Skipped] = collections.deque()
        self._held_offers = 0  # the items in `_held` that will take a slot
        self._gone: set[tuple[str, int]] = set()  # partitions revoked during this poll
        self._thread = threading.Thread(target=self._run, name="sdlcflow-agent-offers")
        self._thread.daemon = True
        self.error: BaseException | None = None

    def start(self) -> None:
        self._consumer.subscribe(
            self._topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._thread.start()

    @property
    def read_ahead(self) -> int:
        """Offers held beyond the free slots (read by the consumer thread)."""
        return self._held_offers

    @property
    def held_messages(self) -> int:
        """Messages held in all, the skipped ones behind a waiting offer included."""
        return len(self._held)

    @property
    def paused(self) -> bool:
        """Whether the assignment is paused because the backlog is full."""
        return self._paused

    def release_slot(self) -> None:
        with self._lock:
            self._free += 1

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        if offsets:
            self._commits.put(offsets)

    def stop_accepting(self) -> None:
        """Take no more offers (shutdown): partitions stay assigned, nothing new is delivered."""
        self._accepting = False

    def _take_slots(self) -> int:
        with self._lock:
            return self._free if self._accepting else 0

    def _use_slots(self, count: int) -> None:
        with self._lock:
            self._free -= count

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._apply_commits(asynchronous=True)
                free = self._take_slots()
                self._flow(self._wants_more(free))
                batch = self._poll_offers(free)
                if batch:
                    self._use_slots(sum(not isinstance(item, Skipped) for item in batch))
                    self._deliver(batch)
        except BaseException as exc:  # surfaced by the worker, never swallowed
            self.error = exc
            log.exception("offer consumer stopped")

    def _wants_more(self, free: int) -> bool:
        """Whether to keep fetching: until the held offers fill the free slots and the backlog
        (or the held messages their cap); once paused, not before half of both is worked off
        (a resumed fetch is slow)."""
        offers, messages = free + self._backlog, self._held_cap
        if self._paused:
            offers, messages = offers - self._backlog // 2, messages // 2
        return self._held_offers < offers and len(self._held) < messages

    def _poll_offers(self, free: int) -> OfferBatch:
        """Up to `free` offers (held ones first, then one within POLL_S, then what is
        buffered), and the skipped messages among them. An offer beyond `free` is held, and so
        is everything after it, so the loop sees each partition in offset order; while nothing
        can be handed over, what is buffered is read into the backlog."""
        batch: OfferBatch = []
        offers = 0
        self._gone = set()
        while (
            self._held
            and len(batch) < MAX_BATCH
            and (offers < free or isinstance(self._held[0], Skipped))
        ):
            item = self._held.popleft()
            batch.append(item)
            if not isinstance(item, Skipped):
                offers += 1
                self._held_offers -= 1
        message = self._consumer.poll(0 if batch else POLL_S)
        while message is not None:
            if _check_error(message):
                item = self._decode(message)
                takes_slot = not isinstance(item, Skipped)
                if self._held or (takes_slot and offers >= free):
                    self._held.append(item)
                    self._held_offers += takes_slot
                else:
                    batch.append(item)
                    offers += takes_slot
            if (batch and offers >= free) or len(batch) >= MAX_BATCH:
                break
            if self._held_offers >= self._backlog or len(self._held) >= self._held_cap:
                break
            message = self._consumer.poll(0)
        if self._gone:  # revoked inside a poll above: their new owner reads them again
            batch = [item for item in batch if _origin(item) not in self._gone]
        return batch

    def _flow(self, open_: bool) -> None:
        """Pause the assignment when the backlog is full, resume it when it has room."""
        if open_ == (not self._paused) and not self._assigned:
            return
        assignment = self._consumer.assignment()
        if open_:
            self._consumer.resume(assignment)
        else:
            self._consumer.pause(assignment)
        self._paused = not open_
        self._assigned = False

    def _decode(self, message: Message) -> Delivery | Refusal | Skipped:
        value = message.value()
        if (value is not None and value[:5] in self._skip) or not self._wanted_repo(message.key()):
            return Skipped(message.topic() or "", message.partition() or 0, message.offset() or 0)
        return decode_message(self._codec, message, self._group_id)

    def _apply_commits(self, *, asynchronous: bool) -> None:
        merged: dict[tuple[str, int], int] = {}
        while True:
            try:
                merged.update(self._commits.get_nowait())
            except queue.Empty:
                break
        if not merged:
            return
        # a position the loop worked out just before a rebalance may name a partition that
        # is no longer ours: committing it would move its new owner's offsets
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        offsets = [TopicPartition(t, p, o) for (t, p), o in merged.items() if (t, p) in assigned]
        if not offsets:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed; those offers will be re-delivered: %s", exc)

    def _on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # called before the assignment takes effect: `_flow` applies it on the next turn
        self._assigned = True

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._apply_commits(asynchronous=False)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._gone |= gone
        self._held = collections.deque(item for item in self._held if _origin(item) not in gone)
        self._held_offers = sum(not isinstance(item, Skipped) for item in self._held)
        self._revoked(sorted(gone))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._apply_commits(asynchronous=False)
        self._consumer.close()


class TaskFollower:
    """Reads the task topics from their end, without a group, for every partition: the
    decisions about this worker's tasks, wherever the group put their offers."""

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        topics: Sequence[str],
        codec: EventCodec,
        wanted: frozenset[str],
        deliver: Callable[[list[Delivery]], None],
        skip: frozenset[bytes] = frozenset(),
        wanted_repo: Callable[[bytes | None], bool] = lambda _key: True,
    ) -> None:
        settings = dict(config)
        settings["group.id"] = f"sdlcflow-agent-follower-{uuid.uuid4().hex[:8]}"  # never commits
        self._consumer = Consumer(settings)
        self._topics = list(topics)
        self._codec = codec
        self._wanted = wanted
        self._skip = skip
        self._wanted_repo = wanted_repo
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdlcflow-agent-follower")
        self._thread.daemon = True
        self.error: BaseException | None = None
        self.read = 0  # messages seen on the task topics
        self.decoded = 0  # of which decoded (the rest skipped by frame header or repository)

    def start(self) -> None:
        """Assign every partition at its current end, then start reading (synchronously
        positioned, so no decision made after this returns can be missed)."""
        assignment = []
        deadline = time.monotonic() + transient.DEADLINE_S
        for name in self._topics:
            metadata = self._consumer.list_topics(name, timeout=METADATA_TIMEOUT_S)
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                raise AgentError(
                    f"topic {name} does not exist; start Kafka and create the topics with "
                    "`sdlcflow up`"
                )
            for partition in sorted(topic.partitions):
                _low, high = transient.watermarks(
                    self._consumer, TopicPartition(name, partition), deadline=deadline
                )
                assignment.append(
                    TopicPartition(name, partition, high if high >= 0 else OFFSET_END)
                )
        self._consumer.assign(assignment)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                messages = _poll_batch(self._consumer, MAX_BATCH)
                found = [d for m in messages if _check_error(m) and (d := self._decision(m))]
                if found:
                    self._deliver(found)
        except BaseException as exc:
            self.error = exc
            log.exception("task follower stopped")

    def _decision(self, message: Message) -> Delivery | None:
        self.read += 1
        value = message.value()
        if value is None or value[:5] in self._skip or not self._wanted_repo(message.key()):
            return None
        self.decoded += 1
        outcome = decode_message(self._codec, message, "agent-follower")
        if isinstance(outcome, Refusal):
            log.debug(
                "undecodable decision at %s@%s ignored", message.partition(), message.offset()
            )
            return None
        return outcome if outcome.event.envelope.type in self._wanted else None

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._consumer.close()


def topics_exist(config: Mapping[str, Any], topics: Sequence[str]) -> list[str]:
    """The topics among `topics` that the broker does not have."""
    probe = Consumer({**config, "group.id": f"sdlcflow-agent-probe-{uuid.uuid4().hex[:8]}"})
    try:
        metadata = probe.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise AgentError(
            f"cannot reach Kafka ({exc}); check SDLCFLOW_KAFKA_BOOTSTRAP and `sdlcflow status`"
        ) from exc
    finally:
        probe.close()
    return [t for t in topics if t not in metadata.topics]
