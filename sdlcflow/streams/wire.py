"""Events on the wire: core `Event` <-> Confluent-framed Avro bytes, validated both ways.

Every event type `X` travels as the record `sdlcflow.events.X` = {envelope, payload}. Decoding
returns a core `Event` or raises `DecodeError`; nothing else escapes, so a consumer can send
whatever fails to `sdlc.dead-letter` with the error's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdlcflow.core.events import EVENT_TYPES, Envelope, Event
from sdlcflow.streams.codec import Codec, DecodeError, DecodeReason, EncodeError
from sdlcflow.streams.deadletter import DEAD_LETTER_TYPE, MessageDeadLettered
from sdlcflow.streams.records import RecordTypeError, record_decoder, record_encoder
from sdlcflow.streams.schema_store import EVENTS_NAMESPACE
from sdlcflow.tracing import is_trace_id

# Events that exist only on the wire (written by the shell, never seen by the core's decider).
WIRE_ONLY_TYPES: dict[str, type] = {DEAD_LETTER_TYPE: MessageDeadLettered}


def event_types() -> Mapping[str, type]:
    """Every event type that has a schema: type name -> payload dataclass."""
    return {**EVENT_TYPES, **WIRE_ONLY_TYPES}


def record_name(event_type: str) -> str:
    """The Avro full name (and RecordNameStrategy subject) of an event type."""
    return f"{EVENTS_NAMESPACE}.{event_type}"


class EventCodec:
    """Encodes core events to wire bytes and back, checking envelope and payload agree."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()
        self._types = event_types()
        self._encode_envelope = record_encoder(Envelope)
        self._decode_envelope = record_decoder(Envelope)

    def encode(self, event: Event) -> bytes:
        """Wire bytes of `event`; raise EncodeError if the payload does not match its type."""
        envelope, payload = event.envelope, event.payload
        payload_type = type(payload).__name__
        if envelope.type != payload_type or self._types.get(payload_type) is not type(payload):
            raise EncodeError(
                f"envelope type {envelope.type!r} does not match payload {payload_type}; "
                "set Envelope.type to the payload class name"
            )
        datum = {"envelope": self._encode_envelope(envelope), "payload": _payload_encoder(payload)}
        return self.codec.encode(record_name(payload_type), datum)

    def decode(self, data: bytes | None) -> Event:
        """The event in `data`; raise DecodeError with a precise reason otherwise."""
        decoded = self.codec.decode(data)
        namespace, _, name = decoded.full_name.rpartition(".")
        cls = self._types.get(name) if namespace == EVENTS_NAMESPACE else None
        if cls is None:
            raise DecodeError(
                DecodeReason.UNKNOWN_RECORD_TYPE,
                f"{decoded.full_name} is not an sdlcflow event type",
                decoded.schema_id,
            )
        event = self._build(cls, decoded.datum, decoded.schema_id)
        _validate(event, name, decoded.schema_id)
        return event

    def _build(self, cls: type, datum: dict[str, Any], schema_id: int) -> Event:
        try:
            envelope = self._decode_envelope(datum["envelope"])
            payload = record_decoder(cls)(datum["payload"])
        except (KeyError, ValueError, TypeError, RecordTypeError) as exc:
            raise DecodeError(
                DecodeReason.INVALID_EVENT,
                f"{cls.__name__} does not fit the core's types: {type(exc).__name__}: {exc}",
                schema_id,
            ) from exc
        return Event(envelope, payload)


def _payload_encoder(payload: Any) -> dict[str, Any]:
    return record_encoder(type(payload))(payload)  # type: ignore[no-any-return]


def _validate(event: Event, name: str, schema_id: int) -> None:
    """Checks the schema cannot express: the envelope names the record, ids are usable."""
    envelope = event.envelope
    problem = None
    if envelope.type != name:
        problem = f"envelope type {envelope.type!r} but the record is {name}"
    elif not envelope.event_id:
        problem = "empty event_id"
    elif not is_trace_id(envelope.trace_id):
        problem = f"trace_id {envelope.trace_id!r} is not a W3C trace id (32 lower-case hex)"
    elif not envelope.repo and name != DEAD_LETTER_TYPE:
        problem = "empty repo (every event is keyed by its repository)"
    if problem is not None:
        raise DecodeError(DecodeReason.INVALID_EVENT, f"{name}: {problem}", schema_id)
