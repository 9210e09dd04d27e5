"""Events on the wire: core `Event` <-> Confluent-framed Avro bytes, validated both ways.

Every event type `X` travels as the record `sdlcflow.events.X` = {envelope, payload}. Decoding
returns a core `Event` or raises `DecodeError`; nothing else escapes, so a consumer can send
whatever fails to `sdlc.dead-letter` with the error's reason.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from sdlcflow.core.events import EVENT_TYPES, Envelope, Event
from sdlcflow.streams.codec import (
    HEADER,
    HEADER_SIZE,
    MAGIC_BYTE,
    Codec,
    DecodeError,
    DecodeReason,
    EncodeError,
)
from sdlcflow.streams.compiled import Decoder, Encoder, Malformed, Truncated, compile_event
from sdlcflow.streams.deadletter import DEAD_LETTER_TYPE, MessageDeadLettered
from sdlcflow.streams.records import RecordTypeError, record_decoder, record_encoder
from sdlcflow.streams.schema_store import EVENTS_NAMESPACE
from sdlcflow.tracing import is_trace_id

# Events that exist only on the wire (written by the shell, never seen by the core's decider).
WIRE_ONLY_TYPES: dict[str, type] = {DEAD_LETTER_TYPE: MessageDeadLettered}
# What a compiled reader raises on bytes it does not accept (fastavro then decides).
_REFUSED = (Truncated, Malformed, IndexError, ValueError, struct.error)


def event_types() -> Mapping[str, type]:
    """Every event type that has a schema: type name -> payload dataclass."""
    return {**EVENT_TYPES, **WIRE_ONLY_TYPES}


def record_name(event_type: str) -> str:
    """The Avro full name (and RecordNameStrategy subject) of an event type."""
    return f"{EVENTS_NAMESPACE}.{event_type}"


class EventCodec:
    """Encodes core events to wire bytes and back, checking envelope and payload agree.

    Args:
        codec: the record codec (schemas, registry, size limit).
        compiled: use the per-type compiled encoders/decoders (sdlcflow.streams.compiled) for
            current-schema frames; False forces fastavro for everything (for comparison).
    """

    def __init__(self, codec: Codec | None = None, *, compiled: bool = True) -> None:
        self.codec = codec or Codec()
        self.compiled = compiled
        self._types = event_types()
        self._encode_envelope = record_encoder(Envelope)
        self._decode_envelope = record_decoder(Envelope)
        self._writers: dict[type, tuple[bytes, Encoder | None]] = {}
        self._readers: dict[int, Decoder | None] = {}
        # frame header (magic byte + schema id) -> compiled reader and its event type
        self._fast: dict[bytes, tuple[Decoder, str]] = {}
        self._max_bytes = self.codec.max_message_bytes

    def encode(self, event: Event) -> bytes:
        """Wire bytes of `event`; raise EncodeError if the payload does not match its type."""
        envelope, payload = event.envelope, event.payload
        cls = type(payload)
        writer = self._writers.get(cls)
        if writer is None:
            writer = self._writer(cls)
        if envelope.type != cls.__name__:
            raise EncodeError(
                f"envelope type {envelope.type!r} does not match payload {cls.__name__}; "
                "set Envelope.type to the payload class name"
            )
        header, write = writer
        if write is None:
            datum = {
                "envelope": self._encode_envelope(envelope),
                "payload": _payload_encoder(payload),
            }
            return self.codec.encode(record_name(cls.__name__), datum)
        out = bytearray(header)
        try:
            write(out, event)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:
            raise EncodeError(
                f"event does not match schema {record_name(cls.__name__)}: "
                f"{type(exc).__name__}: {exc}; check the field types against schemas/"
            ) from exc
        return bytes(out)

    def _writer(self, cls: type) -> tuple[bytes, Encoder | None]:
        if self._types.get(cls.__name__) is not cls:
            raise EncodeError(
                f"{cls.__name__} is not an sdlcflow event payload; "
                f"known: {', '.join(sorted(self._types))}"
            )
        name = record_name(cls.__name__)
        header = self.codec.header(name)
        compiled = self._compile(cls) if self.compiled else None
        writer = (header, compiled[0] if compiled else None)
        self._writers[cls] = writer
        return writer

    def _compile(self, cls: type) -> tuple[Encoder, Decoder] | None:
        schema = self.codec.store.get(record_name(cls.__name__)).schema
        try:
            return compile_event(schema, Envelope, cls, Event)
        except TypeError:
            return None  # a shape the compiler does not handle: fastavro serves it

    def decode(self, data: bytes | None) -> Event:
        """The event in `data`; raise DecodeError with a precise reason otherwise.

        A frame of a current schema goes through its compiled reader; anything that reader
        refuses (and any other frame) is decoded again by fastavro, which names the problem.
        """
        fast = self._fast.get(data[:HEADER_SIZE]) if data else None
        if fast is None or data is None or len(data) > self._max_bytes:
            return self._decode_checked(data)
        read, name = fast
        try:
            event, end = read(data, HEADER_SIZE)
        except _REFUSED:
            return self._decode_slow(data)
        envelope = event.envelope
        if (
            end == len(data)
            and envelope.type == name
            and envelope.event_id
            and envelope.repo
            and is_trace_id(envelope.trace_id)
        ):
            return event  # type: ignore[no-any-return]
        return self._decode_checked(data)

    def _decode_checked(self, data: bytes | None) -> Event:
        """Frame checks, then the compiled reader if the schema id has one, else fastavro."""
        schema_id = self.codec.frame_schema_id(data)
        read = self._readers[schema_id] if schema_id in self._readers else self._reader(schema_id)
        if read is not None:
            assert data is not None
            try:
                event, end = read(data, HEADER_SIZE)
            except _REFUSED:
                return self._decode_slow(data)
            if end == len(data):
                _validate(event, type(event.payload).__name__, schema_id)
                return event  # type: ignore[no-any-return]
        return self._decode_slow(data)

    def _reader(self, schema_id: int) -> Decoder | None:
        """The compiled decoder for a current-schema id; None when fastavro must resolve."""
        read: Decoder | None = None
        name = self.codec.current_name(schema_id) if self.compiled else None
        if name is not None:
            namespace, _, event_type = name.rpartition(".")
            cls = self._types.get(event_type) if namespace == EVENTS_NAMESPACE else None
            compiled = self._compile(cls) if cls is not None else None
            read = compiled[1] if compiled else None
            if read is not None:
                self._fast[HEADER.pack(MAGIC_BYTE, schema_id)] = (read, event_type)
        self._readers[schema_id] = read
        return read

    def _decode_slow(self, data: bytes | None) -> Event:
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
