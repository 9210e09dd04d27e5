"""The dead-letter record: a refused message kept byte for byte with where it came from and why.

Dead letters are evidence (invariant 7: nothing accepted is lost, undecodable input reaches
`sdlc.dead-letter` with its raw bytes and a reason). They are not domain events, so their
payload lives here rather than in the pure core; it is still an Avro record checked against
`schemas/sdlcflow.events.MessageDeadLettered.avsc` by the drift test.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from sdlcflow.core.events import Actor, Envelope, Event
from sdlcflow.tracing import TRACEPARENT_HEADER, TraceContextError, new_trace_id, parse_traceparent

DEAD_LETTER_TYPE = "MessageDeadLettered"
# Namespace of the deterministic dead-letter event ids (uuid5 of group/topic/partition/offset).
DEAD_LETTER_NAMESPACE = uuid.UUID("5b0d7a5e-3f49-4d1e-9c55-6f2b8d1e0a11")
HANDLER_INVALID = "handler-invalid"
# A dead letter must itself fit in a Kafka message (message.max.bytes defaults to ~1 MB).
MAX_DEAD_LETTER_VALUE = 900_000
TRUNCATED_VALUE_KEEP = 65_536


@dataclass(frozen=True)
class Header:
    key: str
    value: bytes | None = None


@dataclass(frozen=True)
class MessageDeadLettered:
    """A refused message, raw, with its origin and the precise reason."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    consumer_group: str
    timestamp: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[Header, ...] = ()
    schema_id: int | None = None


def dead_letter_id(group: str, topic: str, partition: int, offset: int) -> str:
    """The event id of a dead letter: the same message refused twice yields the same id."""
    return str(uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{group}/{topic}/{partition}/{offset}"))


def trace_id_from_headers(headers: tuple[Header, ...]) -> str:
    """The trace of the refused message when it carried a valid traceparent, else a new one."""
    for header in headers:
        if header.key == TRACEPARENT_HEADER and header.value is not None:
            try:
                return parse_traceparent(header.value).trace_id
            except TraceContextError:
                break
    return new_trace_id()


def dead_letter_event(letter: MessageDeadLettered, *, actor: Actor, occurred_at: int) -> Event:
    """Wrap a dead letter in an envelope; repo is the original key when it is text."""
    repo = letter.key.decode("utf-8", "replace") if letter.key else ""
    envelope = Envelope(
        event_id=dead_letter_id(
            letter.consumer_group, letter.topic, letter.partition, letter.offset
        ),
        type=DEAD_LETTER_TYPE,
        occurred_at=occurred_at,
        repo=repo,
        change_id=None,
        task_id=None,
        trace_id=trace_id_from_headers(letter.headers),
        causation_id=None,
        actor=actor,
    )
    return Event(envelope, letter)  # type: ignore[arg-type]  # wire-only payload, see module doc


AVRO_INT_MIN, AVRO_INT_MAX = -(2**31), 2**31 - 1


def fit_for_dead_letter(
    letter: MessageDeadLettered, limit: int = MAX_DEAD_LETTER_VALUE
) -> MessageDeadLettered:
    """Keep a dead letter publishable: a value over `limit` keeps its first 64 KiB, and a schema
    id that does not fit the record's int field is dropped.

    The detail says so and where the original still is (its topic keeps it until retention), so
    an oversize message cannot wedge the consumer in a loop of failing dead-letter deliveries.
    """
    if letter.schema_id is not None and not AVRO_INT_MIN <= letter.schema_id <= AVRO_INT_MAX:
        # a hostile frame's 4 header bytes need not be a schema id any registry could issue;
        # the raw value keeps them, the Avro int field cannot
        letter = dataclasses.replace(letter, schema_id=None)
    if letter.value is None or len(letter.value) <= limit:
        return letter
    kept = letter.value[:TRUNCATED_VALUE_KEEP]
    note = (
        f" [value truncated from {len(letter.value)} to {len(kept)} bytes; the original is "
        f"{letter.topic}[{letter.partition}]@{letter.offset} until retention]"
    )
    return dataclasses.replace(letter, value=kept, detail=letter.detail + note)
