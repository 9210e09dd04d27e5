"""The store sends each batch as the very bytes the driver would encode from its rows' values."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from cassandra import ConsistencyLevel, ProtocolVersion
from cassandra.protocol import BatchMessage, ColumnMetadata, ProtocolHandler
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement
from cql_types import DRIVER_TYPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.audit.rows import Origin, audit_record, placements
from sdlcflow.audit.store import AuditStore
from sdlcflow.audit.tables import TABLES
from sdlcflow.audit.writes import WRITE_TIMESTAMP, Write, group_writes, rows_of
from sdlcflow.core.events import Event
from sdlcflow.streams.testing import events

KEYSPACE = "audit"


class _OneNodeSession:
    """Prepares the audit upserts as a node would describe them; sends nothing."""

    def __init__(self) -> None:
        self.client_protocol_handler: Any = ProtocolHandler
        self.cluster = SimpleNamespace(metadata=SimpleNamespace(all_hosts=lambda: ["node"]))
        self._ids = itertools.count(1)

    def prepare(self, query: str) -> PreparedStatement:
        table = query.split()[2].removeprefix(f"{KEYSPACE}.")
        spec = TABLES[table]
        kinds = {**dict(spec.columns), WRITE_TIMESTAMP: "bigint"}
        names = (*spec.written, WRITE_TIMESTAMP)
        metadata = [ColumnMetadata(KEYSPACE, table, n, DRIVER_TYPES[kinds[n]]) for n in names]
        return PreparedStatement(
            metadata,
            b"id-%d" % next(self._ids),
            [names.index(n) for n in spec.partition_key],
            query,
            KEYSPACE,
            5,
            None,
            None,
        )


def _driver_statement(store: AuditStore, write: Write) -> Any:
    """The write as the driver's own statements: a bound statement per row, batched."""
    bound = []
    for row in write.rows:
        statement = BoundStatement(store._inserts[row.table])
        statement.values = list(row.values)
        bound.append(statement)
    if len(bound) == 1:
        return bound[0]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=store.consistency)
    for statement in bound:
        batch.add(statement)
    return batch


def _frame(handler: Any, batch: BatchStatement, protocol_version: int) -> bytes:
    """The request frame the session sends for `batch` (its message as `Session.execute_async`
    builds it), with a fixed client timestamp."""
    message = BatchMessage(
        batch.batch_type,
        batch._statements_and_parameters,
        batch.consistency_level,
        ConsistencyLevel.SERIAL,
        1_700_000_000_000_000,
        batch.keyspace if ProtocolVersion.uses_keyspace_flag(protocol_version) else None,
    )
    frame: bytes = handler.encode_message(message, 7, protocol_version, None, False)
    return frame


class TestEncodedBatches:
    """Rows encoded when they are built reach Cassandra exactly as the driver encodes them."""

    @given(st.lists(events(), min_size=1, max_size=12), st.integers(1, 40), st.sampled_from([4, 5]))
    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    def test_a_batch_is_the_frame_the_driver_encodes_from_its_rows(
        self, batch: list[Event], max_rows: int, protocol_version: int
    ) -> None:
        store = AuditStore(_OneNodeSession(), KEYSPACE)  # type: ignore[arg-type]
        rows = []
        for offset, event in enumerate(batch):
            record = audit_record(event, b"\x00avro", Origin("sdlc.coordinator", 1, offset))
            rows += rows_of(record, placements(event))
        for write in group_writes(rows, route=None, max_rows=max_rows):
            ours, drivers = store.statement(write), _driver_statement(store, write)
            assert type(ours) is type(drivers)
            assert (ours.routing_key, ours.keyspace) == (drivers.routing_key, drivers.keyspace)
            if isinstance(drivers, BoundStatement):  # one row: the driver encodes its values
                assert ours.values == drivers.values
            else:
                handler = store.session.client_protocol_handler
                ours_frame = _frame(handler, ours, protocol_version)
                assert ours_frame == _frame(ProtocolHandler, drivers, protocol_version)

    def test_every_other_message_is_encoded_by_the_sessions_own_handler(self) -> None:
        session = _OneNodeSession()
        AuditStore(session, KEYSPACE)  # type: ignore[arg-type]
        AuditStore(session, KEYSPACE)  # type: ignore[arg-type]
        handler = session.client_protocol_handler
        assert handler.__bases__ == (ProtocolHandler,)  # wrapped once, however many stores
        message = BatchMessage(BatchType.UNLOGGED, [(True, b"id", [b"v", None])], 1)
        assert handler.encode_message(message, 1, 5, None, False) == (
            ProtocolHandler.encode_message(message, 1, 5, None, False)
        )
