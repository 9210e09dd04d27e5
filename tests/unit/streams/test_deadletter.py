"""Dead letters keep the refused message raw, carry its trace, and always fit in Kafka."""

from __future__ import annotations

from confluent_kafka import Message

from sdlcflow.core.events import Actor, ActorKind
from sdlcflow.streams.codec import Codec, DecodeReason
from sdlcflow.streams.consumer import Delivery, Refusal, decode_message
from sdlcflow.streams.deadletter import (
    TRUNCATED_VALUE_KEEP,
    Header,
    MessageDeadLettered,
    dead_letter_event,
    fit_for_dead_letter,
)
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.testing import sample_event
from sdlcflow.streams.wire import EventCodec

CODEC = EventCodec(Codec(registry=LocalSchemaRegistry.default()))
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ACTOR = Actor(ActorKind.OPS, "tests")


def _message(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Message:
    return Message(
        topic="sdlc.agent-events",
        partition=4,
        offset=17,
        key=b"acme/web",
        value=value,
        headers=headers or [],
        timestamp=(1, 1_700_000_000_123),
    )


def _letter(value: bytes) -> MessageDeadLettered:
    return MessageDeadLettered("oversize", "too big", "t", 0, 9, "g", value=value)


class TestDecodeMessage:
    """A Kafka message becomes a Delivery with its trace, or a Refusal keeping its bytes."""

    def test_a_valid_message_is_delivered_with_its_origin_and_trace(self) -> None:
        event = sample_event("TaskFailed")
        outcome = decode_message(
            CODEC, _message(CODEC.encode(event), [("traceparent", TRACEPARENT)]), "g"
        )
        assert isinstance(outcome, Delivery)
        assert (outcome.event, outcome.partition, outcome.offset) == (event, 4, 17)
        assert outcome.trace is not None
        assert outcome.trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"

    def test_a_bad_message_is_refused_with_its_bytes_and_origin(self) -> None:
        outcome = decode_message(CODEC, _message(b"not avro", [("x", b"1")]), "group-a")
        assert isinstance(outcome, Refusal)
        letter = outcome.letter
        assert letter.reason == DecodeReason.NOT_WIRE_FORMAT.value
        assert (letter.topic, letter.partition, letter.offset) == ("sdlc.agent-events", 4, 17)
        assert (letter.key, letter.value, letter.headers) == (
            b"acme/web",
            b"not avro",
            (Header("x", b"1"),),
        )
        assert (letter.consumer_group, letter.timestamp) == ("group-a", 1_700_000_000_123)


class TestDeadLetterEvent:
    """The dead-letter event is idempotent per message, keyed by repo and traced."""

    def test_the_same_message_refused_twice_has_the_same_event_id(self) -> None:
        letter = _letter(b"x")
        first = dead_letter_event(letter, actor=ACTOR, occurred_at=1)
        again = dead_letter_event(letter, actor=ACTOR, occurred_at=2)
        assert first.envelope.event_id == again.envelope.event_id

    def test_the_dead_letter_continues_the_refused_message_trace(self) -> None:
        outcome = decode_message(CODEC, _message(b"junk", [("traceparent", TRACEPARENT)]), "g")
        assert isinstance(outcome, Refusal)
        event = dead_letter_event(outcome.letter, actor=ACTOR, occurred_at=1)
        assert event.envelope.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert event.envelope.repo == "acme/web"
        assert CODEC.decode(CODEC.encode(event)) == event


class TestFitForDeadLetter:
    """An oversize value is cut so the dead letter can be published; small ones are untouched."""

    def test_a_small_value_is_kept_whole(self) -> None:
        letter = _letter(b"x" * 100)
        assert fit_for_dead_letter(letter, limit=100) is letter

    def test_an_oversize_value_keeps_its_head_and_says_where_the_original_is(self) -> None:
        fitted = fit_for_dead_letter(_letter(b"y" * (TRUNCATED_VALUE_KEEP + 10)), limit=1000)
        assert fitted.value == b"y" * TRUNCATED_VALUE_KEEP
        assert f"truncated from {TRUNCATED_VALUE_KEEP + 10}" in fitted.detail
        assert "t[0]@9" in fitted.detail
