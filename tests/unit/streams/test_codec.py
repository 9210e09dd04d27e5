"""The codec frames records in the Confluent wire format and refuses bad input with one error."""

from __future__ import annotations

import copy
import dataclasses
import io
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.core.events import Actor, ActorKind, ChangeCancelled, Envelope, Event, TaskFailed
from sdlcflow.errors import SdlcflowError
from sdlcflow.streams.codec import HEADER, Codec, DecodeError, DecodeReason, EncodeError
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.schema_store import ContractSchema, current_store
from sdlcflow.streams.testing import events
from sdlcflow.streams.wire import EventCodec, record_name

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _codec(**kwargs: Any) -> EventCodec:
    return EventCodec(Codec(registry=LocalSchemaRegistry.default(), **kwargs))


def _cancelled(**envelope: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": "0d5f4c1e-7c1a-4a4b-9a57-3e8a4f1f2b6c",
        "type": "ChangeCancelled",
        "occurred_at": 1_700_000_000_000,
        "repo": "acme/web",
        "change_id": "c-1",
        "task_id": None,
        "trace_id": TRACE,
        "causation_id": None,
        "actor": Actor(ActorKind.PRODUCER, "cli"),
    }
    fields.update(envelope)
    return Event(Envelope(**fields), ChangeCancelled(reason="superseded"))


def _foreign_frame(codec: EventCodec, change: Any, datum: dict[str, Any]) -> bytes:
    """A frame written by a producer that registered its own variant of ChangeCancelled."""
    schema = copy.deepcopy(dict(current_store().get(record_name("ChangeCancelled")).schema))
    change(schema)
    foreign = ContractSchema.from_schema(schema)
    schema_id = codec.codec.registry.id_for(foreign)
    buffer = io.BytesIO(HEADER.pack(0, schema_id))
    buffer.seek(0, io.SEEK_END)
    schemaless_writer(buffer, foreign.wire, datum)
    return buffer.getvalue()


def _envelope_datum(**changes: Any) -> dict[str, Any]:
    envelope = dataclasses.asdict(_cancelled().envelope)
    envelope["actor"]["kind"] = "producer"
    envelope.update(changes)
    return envelope


def _reason(codec: EventCodec, data: bytes | None) -> DecodeReason:
    with pytest.raises(DecodeError) as caught:
        codec.decode(data)
    assert isinstance(caught.value, SdlcflowError)
    return caught.value.reason


class TestDecodeReasons:
    """Each kind of bad input is refused with its own precise reason."""

    def test_a_valid_frame_decodes(self) -> None:
        codec = _codec()
        assert codec.decode(codec.encode(_cancelled())) == _cancelled()

    @pytest.mark.parametrize("data", [None, b""])
    def test_no_value_is_empty(self, data: bytes | None) -> None:
        assert _reason(_codec(), data) is DecodeReason.EMPTY

    @pytest.mark.parametrize(
        "data", [b'{"type": "ChangeRequested"}', b"\x00\x01", b"\x01\x00\x00\x00\x01\x02"]
    )
    def test_json_short_frames_and_other_magic_bytes_are_not_our_wire_format(
        self, data: bytes
    ) -> None:
        assert _reason(_codec(), data) is DecodeReason.NOT_WIRE_FORMAT

    def test_a_schema_id_nobody_registered_is_unknown(self) -> None:
        codec = _codec()
        frame = codec.encode(_cancelled())
        known = set(codec.codec.registry.ids())  # type: ignore[attr-defined]
        unknown = next(i for i in range(1, 1000) if i not in known)
        assert _reason(codec, HEADER.pack(0, unknown) + frame[5:]) is DecodeReason.UNKNOWN_SCHEMA_ID

    def test_a_cut_frame_is_truncated(self) -> None:
        codec = _codec()
        frame = codec.encode(_cancelled())
        assert _reason(codec, frame[:-3]) is DecodeReason.TRUNCATED

    def test_bytes_after_the_record_are_trailing(self) -> None:
        codec = _codec()
        assert _reason(codec, codec.encode(_cancelled()) + b"\x00") is DecodeReason.TRAILING_BYTES

    def test_a_frame_over_the_limit_is_oversize_before_parsing(self) -> None:
        codec = _codec(max_message_bytes=64)
        big = dataclasses.replace(_cancelled(), payload=ChangeCancelled(reason="x" * 100))
        frame = _codec().encode(big)
        assert _reason(codec, frame) is DecodeReason.OVERSIZE

    def test_a_writer_schema_without_a_required_field_is_missing_that_field(self) -> None:
        codec = _codec()

        def rename_reason(schema: dict[str, Any]) -> None:
            schema["fields"][1]["type"]["fields"] = [{"name": "why", "type": "string"}]

        frame = _foreign_frame(
            codec, rename_reason, {"envelope": _envelope_datum(), "payload": {"why": "x"}}
        )
        with pytest.raises(DecodeError) as caught:
            codec.decode(frame)
        assert caught.value.reason is DecodeReason.MISSING_FIELD
        assert "reason" in caught.value.detail

    def test_a_writer_schema_of_another_type_is_incompatible(self) -> None:
        codec = _codec()

        def reason_as_long(schema: dict[str, Any]) -> None:
            schema["fields"][1]["type"]["fields"] = [{"name": "reason", "type": "long"}]

        frame = _foreign_frame(
            codec, reason_as_long, {"envelope": _envelope_datum(), "payload": {"reason": 7}}
        )
        assert _reason(codec, frame) is DecodeReason.INCOMPATIBLE_SCHEMA

    def test_a_record_this_build_does_not_know_is_an_unknown_record_type(self) -> None:
        codec = _codec()

        def rename_record(schema: dict[str, Any]) -> None:
            schema["name"] = "ChangeTeleported"

        frame = _foreign_frame(
            codec, rename_record, {"envelope": _envelope_datum(), "payload": {"reason": "x"}}
        )
        assert _reason(codec, frame) is DecodeReason.UNKNOWN_RECORD_TYPE

    @pytest.mark.parametrize(
        "envelope",
        [{"type": "TaskFailed"}, {"trace_id": "not-a-trace"}, {"repo": ""}, {"event_id": ""}],
    )
    def test_an_envelope_the_schema_allows_but_the_core_cannot_use_is_invalid(
        self, envelope: dict[str, Any]
    ) -> None:
        codec = _codec()
        datum = {"envelope": _envelope_datum(**envelope), "payload": {"reason": "x"}}
        frame = codec.codec.encode(record_name("ChangeCancelled"), datum)
        assert _reason(codec, frame) is DecodeReason.INVALID_EVENT


class TestEncodeErrors:
    """Events that do not fit their schema are refused before they reach Kafka."""

    def test_an_envelope_naming_another_type_is_refused(self) -> None:
        event = _cancelled(type="TaskFailed")
        with pytest.raises(EncodeError, match="does not match payload ChangeCancelled"):
            _codec().encode(event)

    def test_a_payload_with_a_wrong_field_type_is_refused(self) -> None:
        bad = TaskFailed(lease_id="l", epoch="one", error="boom")  # type: ignore[arg-type]
        event = Event(dataclasses.replace(_cancelled().envelope, type="TaskFailed"), bad)
        with pytest.raises(EncodeError, match=r"sdlcflow\.events\.TaskFailed"):
            _codec().encode(event)

    def test_a_record_missing_a_field_is_refused(self) -> None:
        datum = {"envelope": _envelope_datum(), "payload": {}}
        with pytest.raises(EncodeError, match="ChangeCancelled"):
            _codec().codec.encode(record_name("ChangeCancelled"), datum)


FUZZ_CODEC = _codec()


def _outcome(data: bytes) -> Event | DecodeReason:
    """The decoded event or the refusal reason; any other exception fails the test."""
    try:
        return FUZZ_CODEC.decode(data)
    except DecodeError as exc:
        return exc.reason


def _mutate(frame: bytes, edits: list[tuple[int, int]], cut: int | None, extra: bytes) -> bytes:
    data = bytearray(frame)
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    return bytes(data) + extra


class TestDecoderFuzz:
    """Whatever bytes arrive, the decoder returns an event or raises DecodeError, nothing else."""

    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=300))
    def test_random_bytes_only_raise_decode_error(self, data: bytes) -> None:
        assert isinstance(_outcome(data), (Event, DecodeReason))

    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(
        events(),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
        st.none() | st.integers(0, 10_000),
        st.binary(max_size=8),
    )
    def test_mutated_valid_frames_only_raise_decode_error(
        self, event: Event, edits: list[tuple[int, int]], cut: int | None, extra: bytes
    ) -> None:
        outcome = _outcome(_mutate(FUZZ_CODEC.encode(event), edits, cut, extra))
        if isinstance(outcome, Event):
            assert outcome.envelope.type == type(outcome.payload).__name__
        else:
            assert isinstance(outcome, DecodeReason)

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(events(), st.binary(min_size=1, max_size=200))
    def test_valid_headers_with_random_bodies_only_raise_decode_error(
        self, event: Event, body: bytes
    ) -> None:
        frame = FUZZ_CODEC.encode(event)[:5] + body
        assert isinstance(_outcome(frame), (Event, DecodeReason))
