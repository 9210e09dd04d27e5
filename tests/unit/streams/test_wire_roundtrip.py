"""Every event type survives dataclass -> Avro -> Confluent frame -> dataclass unchanged."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.streams.codec import HEADER, MAGIC_BYTE, Codec
from sdlcflow.streams.records import from_avro, to_avro
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.testing import events, payloads
from sdlcflow.streams.wire import EventCodec, event_types, record_name

CODEC = EventCodec(Codec(registry=LocalSchemaRegistry.default()))
EVENT_TYPES = sorted(event_types())


class TestRecordConversion:
    """A payload dataclass converts to an Avro dict and back to an equal dataclass."""

    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    @settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_payload_round_trips_through_its_avro_dict(
        self, event_type: str, data: st.DataObject
    ) -> None:
        payload = data.draw(payloads(event_type))
        assert from_avro(type(payload), to_avro(payload)) == payload


class TestEventRoundTrip:
    """Every event type round-trips through the wire codec with its envelope intact."""

    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    @settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
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
    @settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_compiled_frames_equal_fastavro_frames(
        self, event_type: str, data: st.DataObject
    ) -> None:
        event = data.draw(events(event_type))
        frame = CODEC.encode(event)
        assert frame == GENERIC.encode(event)
        assert CODEC.decode(frame) == GENERIC.decode(frame) == event
