"""Events cross a real broker intact, and bad messages land in the dead-letter topic raw."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import schemaless_writer

from sdlcflow.core.events import Actor, ActorKind, Event
from sdlcflow.infra.topics import BrokerFootprint
from sdlcflow.streams.codec import HEADER, Codec, DecodeReason
from sdlcflow.streams.consumer import Delivery, EventConsumer, InvalidEvent
from sdlcflow.streams.deadletter import HANDLER_INVALID, MessageDeadLettered
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.schema_store import ContractSchema, current_store
from sdlcflow.streams.testing import sample_event
from sdlcflow.streams.wire import EventCodec, event_types, record_name
from sdlcflow.tracing import parse_traceparent

pytestmark = pytest.mark.integration

ACTOR = Actor(ActorKind.OPS, "wire-tests")
MAX_BYTES = 2048


@pytest.fixture
def topics(
    admin: AdminClient, unique_name: Callable[[str], str], footprint: BrokerFootprint
) -> Callable[[], str]:
    """Creates fresh 3-partition topics, deleted after the test."""

    def make() -> str:
        name = footprint.topic(unique_name("wire"))
        for future in admin.create_topics([NewTopic(name, 3, 1)], operation_timeout=30).values():
            future.result(timeout=60)
        return name

    return make


def _codec() -> EventCodec:
    return EventCodec(Codec(registry=LocalSchemaRegistry.default(), max_message_bytes=MAX_BYTES))


def _drain(bootstrap: str, topic: str, count: int, spare: str) -> list[Delivery]:
    """Read `count` events with the consumer helper; nothing may be dead-lettered (to `spare`)."""
    received: list[Delivery] = []
    codec = EventCodec(Codec(registry=LocalSchemaRegistry.default()))
    with EventConsumer(
        [topic],
        group_id=f"{topic}-reader",
        actor=ACTOR,
        bootstrap=bootstrap,
        codec=codec,
        dead_letter_topic=spare,
    ) as consumer:
        consumer.run(received.append, max_messages=count, idle_timeout=60)
        assert consumer.dead_lettered == 0
    return received


class TestBrokerRoundTrip:
    """Every event type published by the SDK is consumed back equal, keyed and traced."""

    def test_every_event_type_round_trips_through_the_broker(
        self, kafka_bootstrap: str, topics: Callable[[], str]
    ) -> None:
        topic = topics()
        codec = _codec()
        sent = {t: sample_event(t, repo=f"acme/{t.lower()}") for t in sorted(event_types())}
        with EventPublisher(kafka_bootstrap, codec=codec) as publisher:
            for event in sent.values():
                publisher.publish(topic, event)
        received = _drain(kafka_bootstrap, topic, len(sent), topics())
        assert {d.event.type: d.event for d in received} == sent
        for delivery in received:
            assert delivery.key == delivery.event.envelope.repo.encode()
            assert delivery.trace is not None
            assert delivery.trace.trace_id == delivery.event.envelope.trace_id


def _foreign_frame(codec: EventCodec, event: Event) -> bytes:
    """ChangeCancelled from a producer whose registered schema lacks the required `reason`."""
    schema = copy.deepcopy(dict(current_store().get(record_name("ChangeCancelled")).schema))
    schema["fields"][1]["type"]["fields"] = [{"name": "why", "type": "string"}]
    foreign = ContractSchema.from_schema(schema)
    schema_id = codec.codec.registry.id_for(foreign)
    datum = codec.codec.decode(codec.encode(event)).datum
    datum["payload"] = {"why": "gone"}
    buffer = io.BytesIO()
    buffer.write(HEADER.pack(0, schema_id))
    schemaless_writer(buffer, foreign.wire, datum)
    return buffer.getvalue()


def _bad_values(codec: EventCodec) -> dict[str, bytes]:
    """One message value per refusal reason, all keyed like real events."""
    valid = codec.encode(sample_event("ChangeCancelled"))
    oversize = codec.encode(sample_event("EscalationRaised", repo="acme/" + "x" * MAX_BYTES))
    unknown = HEADER.pack(0, 7) + valid[5:]
    return {
        DecodeReason.NOT_WIRE_FORMAT.value: b'{"type": "ChangeRequested", "repo": "acme/web"}',
        DecodeReason.UNKNOWN_SCHEMA_ID.value: unknown,
        DecodeReason.TRUNCATED.value: valid[:-4],
        DecodeReason.MISSING_FIELD.value: _foreign_frame(codec, sample_event("ChangeCancelled")),
        DecodeReason.OVERSIZE.value: oversize,
    }


def _read_dead_letters(bootstrap: str, topic: str, count: int, spare: str) -> list[Event]:
    return [d.event for d in _drain(bootstrap, topic, count, spare)]


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=30)}
    finally:
        consumer.close()


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-ends"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(3)
        }
    finally:
        consumer.close()


class TestDeadLetters:
    """Each bad message lands in the dead-letter topic with its reason, origin and raw bytes."""

    def test_bad_payloads_are_dead_lettered_with_reason_and_raw_bytes(
        self, kafka_bootstrap: str, topics: Callable[[], str]
    ) -> None:
        source, dead = topics(), topics()
        codec = _codec()
        bad = _bad_values(codec)
        good = sample_event("ChangeCancelled")
        rejected = sample_event("TaskSkipped")
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for reason, value in bad.items():
            producer.produce(source, key=reason.encode(), value=value, headers=[("origin", b"t")])
        producer.produce(source, key=b"empty", value=None)
        producer.produce(source, key=b"acme/web", value=codec.encode(good))
        producer.produce(source, key=b"acme/web", value=codec.encode(rejected))
        assert producer.flush(30) == 0

        handled: list[Event] = []

        def handle(delivery: Delivery) -> None:
            if delivery.event.type == "TaskSkipped":
                raise InvalidEvent("tasks of this repo may not be skipped")
            handled.append(delivery.event)

        group = f"{source}-service"
        total = len(bad) + 3
        with EventConsumer(
            [source],
            group_id=group,
            actor=ACTOR,
            bootstrap=kafka_bootstrap,
            codec=codec,
            dead_letter_topic=dead,
        ) as consumer:
            assert consumer.run(handle, max_messages=total, idle_timeout=60) == total

        assert handled == [good]
        letters = [
            e.payload for e in _read_dead_letters(kafka_bootstrap, dead, total - 1, topics())
        ]
        assert all(isinstance(letter, MessageDeadLettered) for letter in letters)
        by_key = {letter.key: letter for letter in letters}  # type: ignore[union-attr]
        for reason, value in bad.items():
            letter = by_key[reason.encode()]
            assert (letter.reason, letter.value, letter.topic) == (reason, value, source)
            assert [(h.key, h.value) for h in letter.headers] == [("origin", b"t")]
            assert letter.consumer_group == group
        assert by_key[b"empty"].reason == DecodeReason.EMPTY.value
        assert by_key[b"empty"].value is None
        invalid = next(v for v in letters if v.reason == HANDLER_INVALID)  # type: ignore[union-attr]
        assert invalid.value == codec.encode(rejected)  # type: ignore[union-attr]
        assert "may not be skipped" in invalid.detail  # type: ignore[union-attr]
        assert _committed(kafka_bootstrap, group, source) == _ends(kafka_bootstrap, source)

    def test_dead_letters_keep_the_trace_of_a_traced_message(
        self, kafka_bootstrap: str, topics: Callable[[], str]
    ) -> None:
        source, dead = topics(), topics()
        codec = _codec()
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(
            source, key=b"acme/web", value=b"garbage", headers=[("traceparent", traceparent)]
        )
        assert producer.flush(30) == 0
        with EventConsumer(
            [source],
            group_id=f"{source}-svc",
            actor=ACTOR,
            bootstrap=kafka_bootstrap,
            codec=codec,
            dead_letter_topic=dead,
        ) as consumer:
            consumer.run(lambda _d: None, max_messages=1, idle_timeout=60)
        (letter,) = _read_dead_letters(kafka_bootstrap, dead, 1, topics())
        assert letter.envelope.trace_id == parse_traceparent(traceparent).trace_id
        assert letter.envelope.repo == "acme/web"
        assert letter.envelope.actor == ACTOR
