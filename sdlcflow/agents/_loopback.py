"""A single-process coordinator over the real topics, for SDK integration tests and benchmarks.

It drives the processors' own `CoordinatorEngine` (decoding, credential and signature gate,
the pure core, decision routing) with a plain confluent-kafka loop and in-memory state, and
feeds Ticks straight into the engine. What it leaves out is faust itself (tables, changelogs,
rebalancing), which the SDK never sees: agents talk only to topics.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sdlcflow.core.decider import CoreConfig
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event, Tick
from sdlcflow.core.planner import load_templates, packaged_template_texts
from sdlcflow.processors.engine import INPUT_TOPICS, CoordinatorEngine, Inbound, tick_repo
from sdlcflow.processors.storage import Outbound
from sdlcflow.processors.trust import CredentialGate, TrustedIssuers
from sdlcflow.streams.consumer import message_headers, message_timestamp
from sdlcflow.streams.producer import producer_config
from sdlcflow.streams.topics import TICKS
from sdlcflow.streams.transient import DEADLINE_S, watermarks
from sdlcflow.streams.wire import EventCodec
from sdlcflow.tracing import new_trace_id

log = logging.getLogger("sdlcflow.agents.loopback")


class LoopbackCoordinator:
    """Run the coordinator engine in a thread: `start()`, `stop()`; decisions go to real topics.

    Args:
        bootstrap: Kafka bootstrap servers.
        issuers: trusted credential issuer keys (key id -> public key).
        lease_ttl_ms: lease time-to-live handed to the core.
        tick_interval_ms: how often Ticks (time) are fed to the engine.
        repos: glob patterns of the repositories served (default: all), like `sdlcflow run
            processors --repos`, so a test or benchmark ignores other users of the broker.
    """

    def __init__(
        self,
        bootstrap: str,
        issuers: Mapping[str, Ed25519PublicKey],
        *,
        lease_ttl_ms: int = 30_000,
        tick_interval_ms: int = 200,
        repos: Sequence[str] = (),
    ) -> None:
        core = CoreConfig(
            templates=load_templates(packaged_template_texts()), lease_ttl_ms=lease_ttl_ms
        )
        self.codec = EventCodec()
        self.engine = CoordinatorEngine(
            core,
            CredentialGate(TrustedIssuers.of(issuers)),
            self.codec,
            group="loopback",
            repos=repos,
        )
        self.tick_interval_ms = tick_interval_ms
        self.decisions = 0
        self._bootstrap = bootstrap
        self._producer = Producer(
            {
                **producer_config(bootstrap),
                "linger.ms": 1,  # decisions are latency-bound answers: send within 1 ms
                "client.id": "sdlcflow-loopback",
            }
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"sdlcflow-loopback-{uuid.uuid4().hex[:8]}",  # assign only
                "enable.auto.commit": False,
            }
        )
        self._actor = Actor(ActorKind.COORDINATOR, "loopback")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdlcflow-loopback")
        self._tick_partitions: list[int] = []
        self.error: BaseException | None = None

    def start(self) -> None:
        """Position at the end of every input topic, then serve in a background thread."""
        assignment = []
        deadline = time.monotonic() + DEADLINE_S
        for topic in INPUT_TOPICS:
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in sorted(metadata.partitions):
                _, high = watermarks(
                    self._consumer, TopicPartition(topic, partition), deadline=deadline
                )
                assignment.append(TopicPartition(topic, partition, high))
                if topic == TICKS:
                    self._tick_partitions.append(partition)
        self._consumer.assign(assignment)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._producer.flush(10)
        self._consumer.close()

    def _run(self) -> None:
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._poll()
                if time.monotonic() >= next_tick:
                    batch += self._ticks()
                    next_tick = time.monotonic() + self.tick_interval_ms / 1000
                if batch:
                    self._process(batch)
        except BaseException as exc:
            self.error = exc
            log.exception("loopback coordinator stopped")

    def _poll(self) -> list[Inbound]:
        messages: list[Message] = []
        first = self._consumer.poll(0.01)
        while first is not None and len(messages) < 500:
            if first.error() is None:
                messages.append(first)
            first = self._consumer.poll(0)
        return [_inbound(m) for m in messages]

    def _ticks(self) -> list[Inbound]:
        now = int(time.time() * 1000)
        records = []
        for partition in self._tick_partitions:
            envelope = Envelope(
                event_id=str(uuid.uuid4()), type="Tick", occurred_at=now,
                repo=tick_repo(partition), change_id=None, task_id=None,
                trace_id=new_trace_id(), causation_id=None, actor=self._actor,
            )  # fmt: skip
            value = self.codec.encode(Event(envelope, Tick()))
            key = envelope.repo.encode()
            records.append(Inbound(TICKS, partition, -1, key, value))
        return records

    def _process(self, batch: list[Inbound]) -> None:
        while batch:
            result = self.engine.process(batch, lambda _r, _p: None, lambda _p: frozenset())
            for record in result.outbound:
                self._produce(record)
            self._producer.poll(0)
            self.engine.commit(result)
            self.decisions += result.decisions
            batch = batch[result.consumed :]

    def _produce(self, record: Outbound) -> None:
        extra: dict[str, Any] = {} if record.partition is None else {"partition": record.partition}
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        self._producer.produce(
            record.topic, value=record.value, key=record.key, headers=headers, **extra
        )


def _inbound(message: Message) -> Inbound:
    return Inbound(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=message_headers(message),
        timestamp=message_timestamp(message),
    )
