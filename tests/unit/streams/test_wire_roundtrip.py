"""Every event type survives dataclass -> Avro -> Confluent frame -> dataclass unchanged."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.core.events import Event
from sdlcflow.streams.codec import HEADER, MAGIC_BYTE, Codec
from sdlcflow.streams.compiled import SHORT_LENGTH, SMALL_LONG, read_long
from sdlcflow.streams.records import from_avro, to_avro
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.testing import events, payloads, sample_event
from sdlcflow.streams.wire import EventCodec, event_types, record_name

CODEC = EventCodec(Codec(registry=LocalSchemaRegistry.default()))
EVENT_TYPES = sorted(event_types())


class TestRecordConversion:
    """A payload dataclass converts to an Avro dict and back to an equal dataclass."""

    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_payload_round_trips_through_its_avro_dict(
        self, event_type: str, data: st.DataObject
    ) -> None:
        payload = data.draw(payloads(event_type))
        assert from_avro(type(payload), to_avro(payload)) == payload


class TestEventRoundTrip:
    """Every event type round-trips through the wire codec with its envelope intact."""

    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_event_round_trips_through_a_frame_naming_its_schema_id(
        self, event_type: str, data: st.DataObject
    ) -> None:
        event = data.draw(events(event_type))
        frame = CODEC.encode(event)
        assert HEADER.unpack_from(frame) == (
            MAGIC_BYTE,
            CODEC.codec.schema_id(record_name(event_type)),
        )
        assert CODEC.decode(frame) == event


GENERIC = EventCodec(Codec(registry=LocalSchemaRegistry.default()), compiled=False)


class TestCompiledCodec:
    """The compiled per-type codec writes and reads exactly what fastavro does."""

    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_compiled_frames_equal_fastavro_frames(
        self, event_type: str, data: st.DataObject
    ) -> None:
        event = data.draw(events(event_type))
        frame = CODEC.encode(event)
        assert frame == GENERIC.encode(event)
        assert CODEC.decode(frame) == GENERIC.decode(frame) == event


class TestCompiledVarints:
    """One-byte varints are looked up; longer and non-canonical ones read as fastavro reads them."""

    def test_lookup_tables_agree_with_the_varint_reader(self) -> None:
        for byte in range(256):
            if byte < 0x80:
                value = read_long(bytes([byte]), 0)[0]
                assert SMALL_LONG[byte] == value
                assert SHORT_LENGTH[byte] == (value if value >= 0 else None)
            else:
                assert SMALL_LONG[byte] is None and SHORT_LENGTH[byte] is None

    def test_a_union_branch_written_as_a_two_byte_varint_decodes_like_fastavro(self) -> None:
        base = sample_event("LeaseHeartbeat")
        none = Event(dataclasses.replace(base.envelope, causation_id=None), base.payload)
        empty = Event(dataclasses.replace(base.envelope, causation_id=""), base.payload)
        frame, other = CODEC.encode(none), CODEC.encode(empty)
        at = next(i for i, (a, b) in enumerate(zip(frame, other, strict=False)) if a != b)
        assert frame[at] == 0  # the null branch, index 0
        longer = frame[:at] + b"\x80\x00" + frame[at + 1 :]  # index 0 as a two-byte varint
        assert CODEC.decode(longer) == GENERIC.decode(longer) == none

    def test_strings_longer_than_a_one_byte_length_round_trip(self) -> None:
        base = sample_event("LeaseHeartbeat")
        event = Event(dataclasses.replace(base.envelope, repo="acme/" + "r" * 300), base.payload)
        frame = CODEC.encode(event)
        assert CODEC.decode(frame) == GENERIC.decode(frame) == event
