"""The producer SDK: publish events with no loss and no duplicates, delivery failures as exceptions.

Messages are keyed by repository (one repository's events stay ordered on one partition), carry
the W3C `traceparent` and the event type as headers, and are Avro in the Confluent wire format.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from sdlcflow.core.events import Actor, ActorKind, ChangeRequested, Envelope, Event
from sdlcflow.errors import SdlcflowError
from sdlcflow.pipelines import DEFAULT_PIPELINE
from sdlcflow.settings import Settings
from sdlcflow.streams.topics import CHANGE_REQUESTS
from sdlcflow.streams.wire import EventCodec
from sdlcflow.tracing import TRACEPARENT_HEADER, TraceContext, context_for_trace, new_trace

EVENT_TYPE_HEADER = "sdlcflow-event-type"
DEFAULT_FLUSH_TIMEOUT_S = 30.0


class DeliveryError(SdlcflowError):
    """The broker did not confirm one or more events; they may not be in the log."""


def producer_config(bootstrap: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The producer settings sdlcflow uses; every non-default one says why."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "sdlcflow-producer",
        # retries can neither duplicate nor reorder an event: each lands once, in order
        "enable.idempotence": True,
        # an event counts as sent only when every in-sync replica has it (the log of record)
        "acks": "all",
        # wait up to 5 ms to fill a batch: far fewer requests under load, unnoticeable to people
        "linger.ms": 5,
        # 256 KiB batches hold ~800 typical events: large enough for bursts, small enough to
        # keep memory per partition modest with 12 partitions per topic
        "batch.size": 262_144,
        # events repeat repo names, ids and SHAs; lz4 shrinks batches at little CPU cost
        "compression.type": "lz4",
        # fail a delivery after 30 s so callers learn about an outage instead of hanging
        "delivery.timeout.ms": 30_000,
    }
    config.update(overrides or {})
    return config


def trace_headers(event: Event, trace: TraceContext | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers of an event: its traceparent (a new span of its trace) and its type."""
    context = trace or context_for_trace(event.envelope.trace_id)
    return [
        (TRACEPARENT_HEADER, context.traceparent().encode("ascii")),
        (EVENT_TYPE_HEADER, event.envelope.type.encode("utf-8")),
    ]


class EventPublisher:
    """Publishes core events to topics; `flush()` raises DeliveryError for anything not confirmed.

    Args:
        bootstrap: Kafka bootstrap servers (default: SDLCFLOW_KAFKA_BOOTSTRAP).
        codec: the wire codec (default: current schemas, configured registry).
        config: extra or overriding librdkafka producer settings.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        codec: EventCodec | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        bootstrap = bootstrap or Settings.from_env().kafka_bootstrap
        self.codec = codec or EventCodec()
        self._producer = Producer(producer_config(bootstrap, config))
        self._failures: list[str] = []

    def publish(self, topic: str, event: Event, *, trace: TraceContext | None = None) -> None:
        """Queue one event for `topic`, keyed by its repository; confirm with `flush()`."""
        value = self.codec.encode(event)
        self.publish_raw(
            topic,
            event.envelope.repo.encode("utf-8"),
            value,
            trace_headers(event, trace),
            label=f"{event.envelope.type} {event.envelope.event_id}",
        )

    def publish_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes | None]],
        *,
        label: str,
    ) -> None:
        """Queue pre-encoded bytes; waits for room when the local queue is full."""

        def report(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self._failures.append(f"{label} -> {topic}: {error.str()}")

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers), on_delivery=report
                )
                break
            except BufferError:
                self._producer.poll(0.1)  # queue full: serve delivery reports to make room
            except KafkaException as exc:
                raise DeliveryError(f"cannot queue {label} for {topic}: {exc}") from exc
        self._producer.poll(0)

    def flush(self, timeout: float = DEFAULT_FLUSH_TIMEOUT_S) -> None:
        """Wait for every queued event; raise DeliveryError naming what was not confirmed."""
        remaining = self._producer.flush(timeout)
        failures, self._failures = self._failures, []
        if remaining:
            failures.append(f"{remaining} event(s) still unconfirmed after {timeout:g} s")
        if failures:
            raise DeliveryError(
                "events not delivered: "
                + "; ".join(failures[:10])
                + ("" if len(failures) <= 10 else f"; and {len(failures) - 10} more")
                + ". Check that Kafka is up (`sdlcflow status`) and the topic exists."
            )

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._producer.flush(1.0)


@dataclass(frozen=True)
class Submission:
    """What a submitted change is known by: its change id, the event's id and its trace."""

    change_id: str
    event_id: str
    trace_id: str
    traceparent: str


@dataclass(frozen=True)
class ChangeSpec:
    """What a producer says about a change; the planner's `when:` conditions read it."""

    repo: str
    base_sha: str
    head_sha: str
    kind: str
    template: str = DEFAULT_PIPELINE
    lockfile_digest: str = ""
    title: str = ""
    paths: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()


class ChangeRequestProducer:
    """Submits change requests (ChangeRequested on sdlc.change-requests) for a producer identity."""

    def __init__(self, publisher: EventPublisher, *, actor_id: str = "sdlcflow-cli") -> None:
        self.publisher = publisher
        self.actor = Actor(ActorKind.PRODUCER, actor_id)

    def submit(self, change: ChangeSpec, *, change_id: str | None = None) -> Submission:
        """Publish one change request and wait until the broker confirmed it."""
        trace = new_trace()
        event_id = str(uuid.uuid4())
        change_id = change_id or str(uuid.uuid4())
        envelope = Envelope(
            event_id=event_id,
            type="ChangeRequested",
            occurred_at=int(time.time() * 1000),
            repo=change.repo,
            change_id=change_id,
            task_id=None,
            trace_id=trace.trace_id,
            causation_id=None,
            actor=self.actor,
        )
        payload = ChangeRequested(
            kind=change.kind,
            template=change.template,
            base_sha=change.base_sha,
            head_sha=change.head_sha,
            lockfile_digest=change.lockfile_digest,
            title=change.title,
            paths=change.paths,
            labels=change.labels,
            resources=change.resources,
            environments=change.environments,
        )
        self.publisher.publish(CHANGE_REQUESTS, Event(envelope, payload), trace=trace)
        self.publisher.flush()
        return Submission(change_id, event_id, trace.trace_id, trace.traceparent())
