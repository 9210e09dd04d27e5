"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.

Any Schema-Registry-aware tool reads our topics. Decoding never lets a foreign exception out:
everything that is not a valid record of a known schema becomes a `DecodeError` whose `reason`
says precisely what was wrong, so the consumer can dead-letter it and carry on.
"""

from __future__ import annotations

import enum
import io
import struct
import time
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from sdlcflow.errors import SdlcflowError
from sdlcflow.streams.registry import SchemaRegistry, registry_from_settings
from sdlcflow.streams.schema_store import ContractSchema, SchemaStore, current_store

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size
# Kafka's default message.max.bytes; a record above it is refused before any parsing.
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
# How long an id the registry did not know is refused without asking again: a flood of frames
# with a bogus id must not become a flood of registry requests, yet a schema registered later
# is picked up.
UNKNOWN_ID_TTL_S = 30.0


class DecodeReason(enum.StrEnum):
    """Why a message could not be decoded; stable strings, stored in dead letters."""

    EMPTY = "empty"
    NOT_WIRE_FORMAT = "not-wire-format"
    OVERSIZE = "oversize"
    UNKNOWN_SCHEMA_ID = "unknown-schema-id"
    UNKNOWN_RECORD_TYPE = "unknown-record-type"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing-bytes"
    MISSING_FIELD = "missing-required-field"
    INCOMPATIBLE_SCHEMA = "incompatible-schema"
    MALFORMED = "malformed"
    INVALID_EVENT = "invalid-event"


class DecodeError(SdlcflowError):
    """A message that is not a valid sdlcflow record; `reason` is machine-readable."""

    def __init__(self, reason: DecodeReason, detail: str, schema_id: int | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.schema_id = schema_id


class EncodeError(SdlcflowError):
    """A record that does not match its schema (a missing field, a wrong type)."""


@dataclass(frozen=True)
class Decoded:
    """A decoded record: which contract it follows, which schema id wrote it, its fields."""

    full_name: str
    schema_id: int
    datum: dict[str, Any]


@dataclass(frozen=True)
class _Reader:
    full_name: str
    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None when the writer schema is the current one


class Codec:
    """Encodes and decodes records of the current contracts, with cached schemas and ids.

    Args:
        store: the contracts this process writes and reads into.
        registry: where schema ids come from (default: SDLCFLOW_SCHEMA_REGISTRY_URL or local).
        max_message_bytes: larger frames are refused as oversize before parsing.
    """

    def __init__(
        self,
        store: SchemaStore | None = None,
        registry: SchemaRegistry | None = None,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.store = store or current_store()
        self.registry = registry or registry_from_settings()
        self.max_message_bytes = max_message_bytes
        self._writers: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self._readers: dict[int, _Reader] = {}
        self._unknown: dict[int, float] = {}

    def schema_id(self, full_name: str) -> int:
        """The registry id of the current schema of `full_name`."""
        return HEADER.unpack(self._writer(full_name)[0])[1]  # type: ignore[no-any-return]

    def header(self, full_name: str) -> bytes:
        """The 5-byte frame header (magic byte and schema id) of the current `full_name`."""
        return self._writer(full_name)[0]

    def encode(self, full_name: str, datum: dict[str, Any]) -> bytes:
        """Frame `datum` as a record of `full_name`; raise EncodeError when it does not fit."""
        header, wire = self._writer(full_name)
        buffer = io.BytesIO()
        buffer.write(header)
        try:
            schemaless_writer(buffer, wire, datum, strict=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(
                f"record does not match schema {full_name}: {exc}; "
                "check the field names and types against schemas/"
            ) from exc
        return buffer.getvalue()

    def decode(self, data: bytes | None) -> Decoded:
        """Parse one frame; raise DecodeError (only) when it is not a valid record."""
        schema_id = self._check_frame(data)
        assert data is not None
        reader = self._reader(schema_id)
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_SIZE)
        datum = _read(buffer, reader, schema_id)
        if buffer.tell() != len(data):
            raise DecodeError(
                DecodeReason.TRAILING_BYTES,
                f"{len(data) - buffer.tell()} bytes left after a complete {reader.full_name}",
                schema_id,
            )
        return Decoded(reader.full_name, schema_id, datum)

    def current_name(self, schema_id: int) -> str | None:
        """The record name when `schema_id` is the current schema of a record, else None."""
        reader = self._reader(schema_id)
        return reader.full_name if reader.reader is None else None

    def frame_schema_id(self, data: bytes | None) -> int:
        """The schema id of a frame after the size and magic-byte checks (DecodeError if bad)."""
        return self._check_frame(data)

    def _check_frame(self, data: bytes | None) -> int:
        if not data:
            raise DecodeError(DecodeReason.EMPTY, "message has no value (null or zero bytes)")
        if len(data) > self.max_message_bytes:
            raise DecodeError(
                DecodeReason.OVERSIZE,
                f"{len(data)} bytes exceeds the limit of {self.max_message_bytes}",
            )
        if len(data) < HEADER_SIZE or data[0] != MAGIC_BYTE:
            raise DecodeError(
                DecodeReason.NOT_WIRE_FORMAT,
                "expected magic byte 0 and a 4-byte schema id (Confluent wire format), "
                f"got {bytes(data[:HEADER_SIZE])!r}",
            )
        return HEADER.unpack_from(data)[1]  # type: ignore[no-any-return]

    def _writer(self, full_name: str) -> tuple[bytes, dict[str, Any]]:
        cached = self._writers.get(full_name)
        if cached is None:
            schema = self.store.get(full_name)
            schema_id = self.registry.id_for(schema)
            cached = (HEADER.pack(MAGIC_BYTE, schema_id), schema.wire)
            self._writers[full_name] = cached
            self._readers.setdefault(schema_id, _Reader(full_name, schema.wire, None))
        return cached

    def _reader(self, schema_id: int) -> _Reader:
        cached = self._readers.get(schema_id)
        if cached is not None:
            return cached
        refused_at = self._unknown.get(schema_id)
        now = time.monotonic()
        writer = None
        if refused_at is None or now - refused_at > UNKNOWN_ID_TTL_S:
            writer = self.registry.schema_for(schema_id)
            if writer is None:
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
                self._unknown[schema_id] = now
        if writer is None:
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA_ID,
                f"schema id {schema_id} is not in the registry",
                schema_id,
            )
        reader = self._resolve(writer, schema_id)
        self._readers[schema_id] = reader
        return reader

    def _resolve(self, writer: ContractSchema, schema_id: int) -> _Reader:
        if writer.full_name not in self.store:
            raise DecodeError(
                DecodeReason.UNKNOWN_RECORD_TYPE,
                f"schema id {schema_id} is {writer.full_name}, which this build does not know; "
                "upgrade sdlcflow or add the schema",
                schema_id,
            )
        current = self.store.get(writer.full_name)
        same = current.canonical == writer.canonical
        return _Reader(writer.full_name, writer.wire, None if same else current.wire)


def _read(buffer: io.BytesIO, reader: _Reader, schema_id: int) -> dict[str, Any]:
    """One schemaless read, every failure mapped to a precise DecodeError."""
    try:
        datum = schemaless_reader(buffer, reader.writer, reader.reader)
    except (EOFError, StopIteration) as exc:
        raise DecodeError(
            DecodeReason.TRUNCATED, f"{reader.full_name} ends early: {exc}", schema_id
        ) from exc
    except SchemaResolutionError as exc:
        reason = (
            DecodeReason.MISSING_FIELD
            if "no default value for field" in str(exc).lower()
            else DecodeReason.INCOMPATIBLE_SCHEMA
        )
        raise DecodeError(reason, f"{reader.full_name}: {exc}", schema_id) from exc
    except Exception as exc:  # fastavro raises many types on garbage; none may escape
        raise DecodeError(
            DecodeReason.MALFORMED,
            f"{reader.full_name} is not valid Avro ({type(exc).__name__}: {exc})",
            schema_id,
        ) from exc
    if not isinstance(datum, dict):
        raise DecodeError(DecodeReason.MALFORMED, f"{reader.full_name} is not a record", schema_id)
    return datum


def default_codec() -> Codec:
    """A codec over the current contracts and the configured registry."""
    return Codec()
