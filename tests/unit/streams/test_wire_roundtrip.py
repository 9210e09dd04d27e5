"""Every event type survives dataclass -> Avro -> Confluent frame -> dataclass unchanged."""

from __future__ import annotations

import dataclasses
import io

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.core.events import Event
from sdlcflow.streams.codec import HEADER, MAGIC_BYTE, Codec, DecodeError, DecodeReason
from sdlcflow.streams.compiled import SHORT_LENGTH, SMALL_LONG, read_long
from sdlcflow.streams.records import from_avro, to_avro
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.schema_store import current_store, released_store
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

    def test_a_map_written_in_blocks_with_byte_sizes_decodes_like_fastavro(self) -> None:
        base = sample_event("TaskOffered")
        modes = {"a": True, "b": False}
        event = Event(base.envelope, dataclasses.replace(base.payload, policy_modes=modes))
        frame = CODEC.encode(event)
        assert frame == GENERIC.encode(event)
        one_block = b"\x04\x02a\x01\x02b\x00\x00"  # policy_modes is the last field
        assert frame.endswith(one_block)
        # two blocks of one pair each, counts negative so a byte size follows (Avro spec)
        blocks = frame[: -len(one_block)] + b"\x01\x06\x02a\x01\x01\x06\x02b\x00\x00"
        assert CODEC.decode(blocks) == GENERIC.decode(blocks) == event

    def test_strings_longer_than_a_one_byte_length_round_trip(self) -> None:
        base = sample_event("LeaseHeartbeat")
        event = Event(dataclasses.replace(base.envelope, repo="acme/" + "r" * 300), base.payload)
        frame = CODEC.encode(event)
        assert CODEC.decode(frame) == GENERIC.decode(frame) == event


class TestCompiledReaderOnItsOwn:
    """The compiled reader reads every valid frame itself; fastavro is for the exceptions."""

    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_the_compiled_reader_reads_a_valid_frame_to_its_end(
        self, event_type: str, data: st.DataObject
    ) -> None:
        event = data.draw(events(event_type))
        frame = CODEC.encode(event)
        read = CODEC._reader(HEADER.unpack_from(frame)[1])
        if read is not None:  # None: a shape the compiler leaves to fastavro
            assert read(frame, HEADER.size) == (event, len(frame))

    @pytest.mark.parametrize(
        "occurred_at",
        [
            *(0, 63, 64, -1, -(2**40), 2**34 - 1, 2**34, 1_767_225_600_123, 2**41 - 1, 2**41),
            *(-(2**34), -(2**34) - 1, -(2**41), -(2**41) - 1, 2**62, 2**63 - 1, -(2**63)),
        ],
    )
    def test_timestamps_of_every_varint_size_read_like_fastavro(self, occurred_at: int) -> None:
        base = sample_event("LeaseHeartbeat")
        event = Event(dataclasses.replace(base.envelope, occurred_at=occurred_at), base.payload)
        frame = CODEC.encode(event)
        assert frame == GENERIC.encode(event)
        assert CODEC.decode(frame) == GENERIC.decode(frame) == event

    @settings(max_examples=200, deadline=None)
    @given(occurred_at=st.integers(min_value=-(2**63), max_value=2**63 - 1))
    def test_timestamps_are_written_like_fastavro(self, occurred_at: int) -> None:
        base = sample_event("LeaseHeartbeat")
        event = Event(dataclasses.replace(base.envelope, occurred_at=occurred_at), base.payload)
        assert CODEC.encode(event) == GENERIC.encode(event)

    @pytest.mark.parametrize("size", [0, 63, 64, 65, 8191, 8192, 70_000])
    def test_strings_of_every_length_size_read_like_fastavro(self, size: int) -> None:
        base = sample_event("LeaseHeartbeat")
        event = Event(dataclasses.replace(base.envelope, signature="s" * size), base.payload)
        frame = CODEC.encode(event)
        assert CODEC._reader(HEADER.unpack_from(frame)[1]) is not None
        assert CODEC.decode(frame) == GENERIC.decode(frame) == event


def _outcome(codec: EventCodec, data: bytes) -> Event | DecodeReason:
    try:
        return codec.decode(data)
    except DecodeError as exc:
        return exc.reason


class TestCompiledAgreesWithFastavroOnBadInput:
    """On damaged frames the compiled path gives fastavro's answer: same event or same reason."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        events(),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
        st.none() | st.integers(0, 10_000),
        st.binary(max_size=4),
    )
    def test_mutated_frames_decode_or_fail_alike(
        self, event: Event, edits: list[tuple[int, int]], cut: int | None, extra: bytes
    ) -> None:
        data = bytearray(CODEC.encode(event))
        for position, value in edits:
            data[HEADER.size + position % (len(data) - HEADER.size)] = value
        if cut is not None:
            data = data[: cut % (len(data) + 1)]
        frame = bytes(data) + extra
        assert _outcome(CODEC, frame) == _outcome(GENERIC, frame)


V1_TYPES = [t for t in EVENT_TYPES if record_name(t) in released_store("v1")]


class TestOlderWriters:
    """Frames written with a released (older) schema are resolved by fastavro, not misread."""

    @pytest.mark.parametrize("event_type", V1_TYPES)
    def test_a_frame_of_the_released_schema_decodes_to_the_current_types(
        self, event_type: str
    ) -> None:
        name = record_name(event_type)
        writer = released_store("v1").get(name)
        event = sample_event(event_type)
        datum = {"envelope": to_avro(event.envelope), "payload": to_avro(event.payload)}
        buffer = io.BytesIO(HEADER.pack(MAGIC_BYTE, CODEC.codec.registry.id_for(writer)))
        buffer.seek(0, io.SEEK_END)
        schemaless_writer(buffer, writer.wire, datum)
        frame = buffer.getvalue()
        decoded = CODEC.decode(frame)
        assert decoded == GENERIC.decode(frame)
        assert decoded.envelope == event.envelope
        same = writer.canonical == current_store().get(name).canonical
        assert (decoded == event) or not same
