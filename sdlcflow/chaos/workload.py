"""The inputs a chaos run sends: change requests across repositories, head moves, operator
revocations, and duplicated or replayed input records (re-produced byte for byte).

Everything goes to the private broker through one publisher guarded by a lock (the submitting
thread and the fault injector share it). While the broker is down a send is retried until it
is confirmed; sending an event twice is harmless, since its id stays the same.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition

from sdlcflow.chaos.follow import LiveLease, now_ms
from sdlcflow.core.events import ActorKind, CredentialRevoked, Event
from sdlcflow.processors.testing import SignedActor, TestIssuer, change_request
from sdlcflow.streams.producer import DeliveryError, EventPublisher
from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS

# a broker bounce may wait for a Cassandra restart (one lock serialises server starts)
SEND_DEADLINE_S = 600.0
RESEND_BATCH = 20
_FLUSH_S = 5.0
_READ_RETRY_S = 1.0
_OPS_TTL_MS = 12 * 3600 * 1000


class SendFailed(Exception):
    """An input could not be confirmed by the broker within the deadline."""


@dataclass
class Submitted:
    """One change the run asked for, and its current head."""

    repo: str
    head: str


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


@dataclass
class Workload:
    """The run's producer side; `submitted` is what the checks expect to see closed."""

    bootstrap: str
    run_id: str
    repos: int
    issuer: TestIssuer
    rng: random.Random
    submitted: dict[str, Submitted] = field(default_factory=dict)
    resent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _publisher: EventPublisher | None = None
    _ops: SignedActor | None = None

    def __post_init__(self) -> None:
        self._publisher = EventPublisher(self.bootstrap, config={"log_level": 0})
        self._ops = self.issuer.actor(
            "chaos-ops", kind=ActorKind.OPS, capabilities=("ops",), issued_at=now_ms() - 1_000,
            ttl_ms=_OPS_TTL_MS,
        )  # fmt: skip

    def close(self) -> None:
        """Close the publisher; what it could not confirm by now was retried or reported."""
        if self._publisher is not None:
            with contextlib.suppress(DeliveryError):
                self._publisher.__exit__(None, None, None)

    def repo(self, index: int) -> str:
        return f"chaos-{self.run_id}/repo-{index % self.repos}"

    # -- sending ------------------------------------------------------------------------------

    def _send(self, topic: str, event: Event) -> None:
        assert self._publisher is not None
        deadline = time.monotonic() + SEND_DEADLINE_S
        with self._lock:
            self._publisher.publish(topic, event)
            while True:
                try:
                    self._publisher.flush(_FLUSH_S)
                    return
                except DeliveryError as exc:
                    if time.monotonic() > deadline:
                        raise SendFailed(f"{event.envelope.type} not confirmed: {exc}") from exc
                    self._publisher.publish(topic, event)  # same id: a duplicate at worst

    def submit(self, index: int) -> str:
        """A new code-change request on one of the run's repositories; its change id."""
        with self._lock:
            head = _sha(self.rng)
        repo = self.repo(index)
        request = change_request(repo, at=now_ms(), head_sha=head, producer="chaos-workload")
        change_id = request.envelope.change_id or ""
        self.submitted[change_id] = Submitted(repo, head)
        self._send(CHANGE_REQUESTS, request)
        return change_id

    def move_head(self, seed: int, closed: set[str]) -> str | None:
        """Move the head of an open change: the coordinator revokes its leases and re-runs it."""
        open_changes = sorted(c for c in self.submitted if c not in closed)
        if not open_changes:
            return None
        change_id = open_changes[seed % len(open_changes)]
        change = self.submitted[change_id]
        with self._lock:
            change.head = _sha(self.rng)
        request = change_request(
            change.repo, at=now_ms(), change_id=change_id, head_sha=change.head,
            producer="chaos-workload",
        )  # fmt: skip
        self._send(CHANGE_REQUESTS, request)
        return change_id

    def revoke(self, lease: LiveLease) -> None:
        """Ops revokes the credential of a live lease's holder: its leases in that repository
        are revoked and the tasks offered again."""
        assert self._ops is not None
        revocation = self._ops.event(
            CredentialRevoked(lease.holder, "chaos: operator revocation"),
            repo=lease.repo,
            at=now_ms(),
            change_id=lease.change_id,
        )
        self._send(AGENT_EVENTS, revocation)

    def resend(self, seed: int, *, latest: bool) -> int:
        """Re-produce input records byte for byte (key, value, headers): the latest ones
        (duplicate delivery) or an older stretch (a consumer replaying old offsets)."""
        picker = random.Random(seed)
        topic = picker.choice((CHANGE_REQUESTS, AGENT_EVENTS))
        records = _records_retrying(self.bootstrap, topic, picker, latest=latest)
        assert self._publisher is not None
        with self._lock:
            for key, value, headers in records:
                self._publisher.publish_raw(topic, key, value, headers, label="chaos resend")
            self._publisher.flush(SEND_DEADLINE_S)
        self.resent += len(records)
        return len(records)


Record = tuple[bytes | None, bytes, list[tuple[str, bytes | None]]]


def _records_retrying(
    bootstrap: str, topic: str, picker: random.Random, *, latest: bool
) -> list[Record]:
    """`_records`, again while the broker is not ready: right after a bounce it answers
    NOT_LEADER_FOR_PARTITION until its partitions have leaders again."""
    deadline = time.monotonic() + SEND_DEADLINE_S
    while True:
        try:
            return _records(bootstrap, topic, picker, latest=latest)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise SendFailed(f"cannot read {topic} to re-produce its records: {exc}") from exc
            time.sleep(_READ_RETRY_S)  # the broker elects leaders meanwhile


def _records(bootstrap: str, topic: str, picker: random.Random, *, latest: bool) -> list[Record]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sdlcflow-chaos-resend-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            # outages are expected here: librdkafka's reconnect chatter is not news
            "log_level": 0,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        ranges = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ranges.append((partition, low, high))
        if not ranges:
            return []
        partition, low, high = picker.choice(ranges)
        if latest:
            start = max(low, high - RESEND_BATCH)
        else:
            start = picker.randrange(low, max(low + 1, high - RESEND_BATCH))
        end = min(high, start + RESEND_BATCH)
        consumer.assign([TopicPartition(topic, partition, start)])
        records: list[Record] = []
        idle = 0
        while start + len(records) < end and idle < 10:
            message = consumer.poll(2.0)
            if message is None or message.error() is not None:
                idle += 1
                continue
            if (message.offset() or 0) >= end:
                break
            headers = [(str(h[0]), _bytes(h[1])) for h in message.headers() or []]
            records.append((message.key(), message.value() or b"", headers))
        return records
    finally:
        consumer.close()


def _bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
