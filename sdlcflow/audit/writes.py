"""Rows as Cassandra receives them, grouped into unlogged batches: pure, no I/O.

An event's shared columns are serialised once (`sdlcflow.audit.cql`), each as a request
carries a bound value (its length, then its bytes), and each of its rows joins the values of
its columns into the bytes a batch message carries for it: sending a row is copying bytes.
Rows bound for the same replicas travel together as one unlogged batch (one request, applied
by the coordinator without a second hop). Which rows share replicas is the caller's `route`
(the store asks the driver's token map); by default only rows of one partition of one table
share a batch. A batch is cut before it would pass Cassandra's batch size limit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sdlcflow.audit import cql
from sdlcflow.audit.rows import AuditRecord, Placement, bucket_ms
from sdlcflow.audit.tables import COMMON_COLUMNS, TABLES, TableSpec

# Cassandra refuses batches above batch_size_fail_threshold (50 KiB by default); stay well under.
MAX_BATCH_BYTES = 40 * 1024
MAX_BATCH_ROWS = 128
# how Cassandra sizes a batch: each cell's value plus its timestamp, TTL and deletion time
# (16 bytes), and each row's liveness; a row's size is counted from its serialised values
_CELL_BYTES = 16
_ROW_BYTES = 16
_HOUR_MS = 3_600_000
# a bound value in a request: its length (int), then its bytes; null is the length -1
_LENGTH = struct.Struct(">i")
_NULL_CELL = _LENGTH.pack(-1)

# the bind marker of `USING TIMESTAMP ?`, last in every upsert (not a column)
WRITE_TIMESTAMP = "[timestamp]"
# columns every row of an event may take from the event itself, beyond the common ones
_BUCKETS = ("day", "hour")

Wire = bytes | None  # a value as the protocol carries it; None is null


@dataclass(slots=True)
class Row:
    """One row for one table, serialised: its written columns' values, then the write
    timestamp, as a request carries them (`cells`: each value's length, then its bytes).

    Treated as immutable (not declared frozen: a frozen dataclass costs four times as much to
    build, and an event has about six rows). `partition` and `key` are serialised too, which
    compares them exactly as Cassandra does; a partition key of one column is its bare bytes.
    """

    table: str
    partition: Wire | tuple[Wire, ...]  # one column's bytes, or a tuple of a composite key's
    cells: bytes
    size: int
    key: tuple[Wire, ...] = ()  # the full primary key (partition + clustering)

    @property
    def values(self) -> tuple[Wire, ...]:
        """The written values one by one, as `cells` carries them (for readers and tests)."""
        return values_of(self.cells)


def values_of(cells: bytes) -> tuple[Wire, ...]:
    """The values of concatenated cells, in order."""
    values: list[Wire] = []
    at = 0
    while at < len(cells):
        (length,) = _LENGTH.unpack_from(cells, at)
        at += 4
        if length < 0:
            values.append(None)
        else:
            values.append(cells[at : at + length])
            at += length
    return tuple(values)


@dataclass(frozen=True, slots=True)
class Write:
    """What goes to Cassandra in one request: rows that share their replicas."""

    rows: tuple[Row, ...]

    @property
    def events(self) -> int:
        return len(self.rows)

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(row.table for row in self.rows)


Route = Callable[[Row], Hashable]


def by_partition(row: Row) -> Hashable:
    """The narrowest route: one partition of one table per batch."""
    return (row.table, row.partition)


def _text(value: str | None) -> Wire:
    return None if value is None else value.encode()


def shared_columns(record: AuditRecord) -> dict[str, Wire]:
    """The event's values every row may take, serialised once: the common columns, the day
    and hour buckets of its time and the write timestamp.

    Written out rather than looped over `COMMON_COLUMNS` (a third of the cost); a unit test
    holds each value to the serialiser of its declared type.
    """
    at = bucket_ms(record.occurred_at)
    return {
        "event_id": record.event_id.encode(),
        "event_type": record.event_type.encode(),
        "occurred_at": cql.timestamp(record.occurred_at),
        "repo": record.repo.encode(),
        "change_id": _text(record.change_id),
        "task_id": _text(record.task_id),
        "trace_id": record.trace_id.encode(),
        "causation_id": _text(record.causation_id),
        "actor_kind": record.actor_kind.encode(),
        "actor_id": record.actor_id.encode(),
        "outcome": record.outcome.encode(),
        "before_sha": _text(record.before_sha),
        "after_sha": _text(record.after_sha),
        "kafka_topic": record.topic.encode(),
        "kafka_partition": cql.cql_int(record.partition),
        "kafka_offset": cql.bigint(record.offset),
        "avro": record.avro,
        "day": cql.day_of(at),
        "hour": cql.timestamp(at - at % _HOUR_MS),
        WRITE_TIMESTAMP: cql.bigint(record.write_timestamp),
    }


Pick = Callable[[Mapping[str, Any]], Any]


def _cells(columns: Mapping[str, Wire]) -> dict[str, bytes]:
    """Each column's value as a request carries it."""
    pack = _LENGTH.pack
    return {
        name: _NULL_CELL if value is None else pack(len(value)) + value
        for name, value in columns.items()
    }


def _picker(names: tuple[str, ...]) -> Pick:
    """The named values as a tuple, or the bare value of a single name."""
    return itemgetter(*names)


def _tuple_picker(names: tuple[str, ...]) -> Pick:
    """The named values as a tuple, even of one name."""
    if len(names) == 1:
        (name,) = names
        return lambda columns: (columns[name],)
    return itemgetter(*names)


@dataclass(frozen=True)
class _Layout:
    """How one table's row is read out of an event's columns: written values (as cells),
    partition, key, the serialisers of the columns its placements supply, and what Cassandra
    counts for a row beyond its values' bytes."""

    cells: Pick
    partition: Pick
    key: Pick
    supplied: dict[str, cql.Serialize]
    whole_event: bool
    overhead: int

    def extra(self, table: str, placement: Placement) -> dict[str, Wire]:
        """The placement's own columns, serialised; every one the table needs is given."""
        extra = dict(placement.extra)
        missing = [name for name in self.supplied if name not in extra]
        if missing:
            raise KeyError(f"{table} needs {missing} in its placement")
        return {
            name: None if value is None else self.supplied[name](value)
            for name, value in extra.items()
        }


def _layout(spec: TableSpec) -> _Layout:
    shared = {name for name, _ in COMMON_COLUMNS} | set(_BUCKETS)
    written = (*spec.written, WRITE_TIMESTAMP)
    return _Layout(
        cells=_picker(written),
        partition=_picker(spec.partition_key),
        key=_tuple_picker(spec.partition_key + spec.clustering),
        supplied={
            name: cql.serializer(kind) for name, kind in spec.extra_columns if name not in shared
        },
        whole_event=spec.whole_event,
        # Cassandra counts each cell's value plus _CELL_BYTES, and the row; a request carries
        # each value after its 4-byte length
        overhead=_ROW_BYTES + (_CELL_BYTES - _LENGTH.size) * len(written),
    )


_LAYOUTS = {name: _layout(spec) for name, spec in TABLES.items()}


def table_row(record: AuditRecord, placement: Placement) -> Row:
    """The row of `record` in the table `placement` names."""
    return rows_of(record, (placement,))[0]


def rows_of(record: AuditRecord, places: Iterable[Placement]) -> list[Row]:
    """One row per placement; only the whole-event table carries the Avro bytes.

    A row's size is what Cassandra counts against the batch limits (about): its values' bytes,
    16 bytes per cell and 16 for the row.
    """
    columns = shared_columns(record)
    cells = _cells(columns)
    rows = []
    join = b"".join
    for placement in places:
        table = placement.table
        layout = _LAYOUTS[table]
        own, own_cells = columns, cells
        if layout.supplied:
            extra = layout.extra(table, placement)
            own, own_cells = columns | extra, cells | _cells(extra)
        body = join(layout.cells(own_cells))
        rows.append(
            Row(table, layout.partition(own), body, layout.overhead + len(body), layout.key(own))
        )
    return rows


def group_writes(
    rows: Sequence[Row],
    *,
    route: Route | None = by_partition,
    max_rows: int = MAX_BATCH_ROWS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[Write]:
    """Rows grouped by `route` (None: all rows share their replicas, as on one node), each
    group cut into batches under the limits.

    Within a group, rows of one partition of one table are placed next to each other, so a
    batch carries few partitions with many rows each: Cassandra applies a batch as one
    mutation per partition, and fewer, larger mutations cost it about a fifth less CPU per
    row than rows in arrival order (measured in `benchmarks/audit_bench.py`).
    The same (table, primary key) twice in one batch would be one mutation anyway; duplicates
    are dropped here so a batch never carries a row twice.
    """
    groups: dict[Hashable, dict[tuple[str, Any], list[Row]]] = {}
    seen: dict[str, set[Any]] = {}  # primary keys written, by table
    for row in rows:
        table, key = row.table, row.key
        keys = seen.get(table)
        if keys is None:
            keys = seen[table] = set()
        elif key in keys:
            continue
        keys.add(key)
        group = None if route is None else route(row)
        partitions = groups.get(group)
        if partitions is None:
            partitions = groups[group] = {}
        partition = (table, row.partition)
        members = partitions.get(partition)
        if members is None:
            partitions[partition] = [row]
        else:
            members.append(row)
    writes: list[Write] = []
    for partitions in groups.values():
        members = [row for partition in partitions.values() for row in partition]
        writes += cut_batches(members, max_rows, max_bytes)
    return writes


def cut_batches(
    rows: list[Row], max_rows: int = MAX_BATCH_ROWS, max_bytes: int = MAX_BATCH_BYTES
) -> list[Write]:
    """`rows` in their order, cut into batches within the row and byte limits."""
    writes: list[Write] = []
    current: list[Row] = []
    size = 0
    for row in rows:
        if current and (len(current) >= max_rows or size + row.size > max_bytes):
            writes.append(Write(tuple(current)))
            current, size = [], 0
        current.append(row)
        size += row.size
    if current:
        writes.append(Write(tuple(current)))
    return writes
