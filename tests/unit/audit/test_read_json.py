"""The event's JSON is rendered from its stored Avro bytes when read; older rows keep theirs."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from sdlcflow.audit.queries import audit_row, rendered
from sdlcflow.audit.rows import render_json
from sdlcflow.audit.tables import TABLES
from sdlcflow.streams.testing import sample_event
from sdlcflow.streams.wire import EventCodec

_NAMES = TABLES["events_by_id"].column_names
StoredRow = NamedTuple("StoredRow", [(name, Any) for name in _NAMES])  # type: ignore[misc]


def _stored(**columns: Any) -> Any:
    """An `events_by_id` row as the driver returns it."""
    return StoredRow(**{name: columns.get(name) for name in _NAMES})


class TestReadTimeJson:
    """Analysts read the same JSON whether the row stored it or only the Avro bytes."""

    def test_json_rendered_from_the_avro_bytes_equals_the_stored_rendering(self) -> None:
        event = sample_event("PolicyEvaluated")
        assert rendered(EventCodec().encode(event)) == render_json(event)

    def test_a_row_without_json_reads_its_json_from_the_avro(self) -> None:
        event = sample_event("TaskFailed")
        avro = EventCodec().encode(event)
        row = audit_row(_stored(event_id="e-1", occurred_at=5, avro=avro))
        assert row.json == render_json(event)
        assert row.payload == orjson.loads(render_json(event))["payload"]

    def test_a_row_written_with_json_keeps_it(self) -> None:
        row = audit_row(_stored(event_id="e-1", json='{"payload": {"a": 1}}', avro=b"x"))
        assert row.payload == {"a": 1}

    def test_bytes_that_no_longer_decode_say_why_instead_of_vanishing(self) -> None:
        document = orjson.loads(rendered(b"\x00\x00\x00\x00\x01garbage"))
        assert document["undecodable"]
