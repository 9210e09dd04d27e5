"""Rows as the driver binds them, grouped into unlogged batches: pure, no I/O.

Rows bound for the same replicas travel together as one unlogged batch (one request, applied
by the coordinator without a second hop). Which rows share replicas is the caller's `route`
(the store asks the driver's token map); by default only rows of one partition of one table
share a batch. A batch is cut before it would pass Cassandra's batch size limit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sdlcflow.audit.rows import AuditRecord, Placement
from sdlcflow.audit.tables import TABLES

# Cassandra refuses batches above batch_size_fail_threshold (50 KiB by default); stay well under.
MAX_BATCH_BYTES = 40 * 1024
MAX_BATCH_ROWS = 128
_ROW_OVERHEAD_BYTES = 128


@dataclass(frozen=True, slots=True)
class Row:
    """One row for one table: the values of its written columns, then the write timestamp."""

    table: str
    partition: tuple[Any, ...]
    values: tuple[Any, ...]
    size: int
    key: tuple[Any, ...] = ()  # the full primary key (partition + clustering)


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


def _common(record: AuditRecord) -> dict[str, Any]:
    return {
        "event_id": record.event_id,
        "event_type": record.event_type,
        "occurred_at": record.occurred_at,  # the driver takes ms since the epoch
        "repo": record.repo,
        "change_id": record.change_id,
        "task_id": record.task_id,
        "trace_id": record.trace_id,
        "causation_id": record.causation_id,
        "actor_kind": record.actor_kind,
        "actor_id": record.actor_id,
        "outcome": record.outcome,
        "before_sha": record.before_sha,
        "after_sha": record.after_sha,
        "kafka_topic": record.topic,
        "kafka_partition": record.partition,
        "kafka_offset": record.offset,
        "avro": record.avro,
        "json": record.json,
    }


@dataclass(frozen=True)
class _Layout:
    """How one table's row is read out of an event's columns: written values, partition, key."""

    values: Callable[[dict[str, Any]], tuple[Any, ...]]
    partition: Callable[[dict[str, Any]], tuple[Any, ...]]
    key: Callable[[dict[str, Any]], tuple[Any, ...]]
    extra: tuple[str, ...]
    whole_event: bool


def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function returning the named values as a tuple (itemgetter returns a bare value for 1)."""
    if len(names) == 1:
        (name,) = names
        return lambda columns: (columns[name],)
    get = itemgetter(*names)
    return lambda columns: get(columns)  # type: ignore[no-any-return]


@functools.cache
def _layout(table: str) -> _Layout:
    spec = TABLES[table]
    return _Layout(
        values=_getter(spec.written),
        partition=_getter(spec.partition_key),
        key=_getter(spec.partition_key + spec.clustering),
        extra=tuple(name for name, _ in spec.extra_columns),
        whole_event=spec.whole_event,
    )


def table_row(record: AuditRecord, placement: Placement) -> Row:
    """The bound values of `record` in the table `placement` names."""
    return rows_of(record, (placement,))[0]


def rows_of(record: AuditRecord, places: Iterable[Placement]) -> list[Row]:
    """One row per placement; only the whole-event table carries the Avro and JSON bytes."""
    common = _common(record)
    body = len(record.avro) + len(record.json)
    rows = []
    for placement in places:
        layout = _layout(placement.table)
        columns = {**common, **dict(placement.extra)} if placement.extra else common
        missing = [name for name in layout.extra if name not in columns]
        if missing:
            raise KeyError(f"{placement.table} needs {missing} in its placement")
        rows.append(
            Row(
                placement.table,
                layout.partition(columns),
                (*layout.values(columns), record.write_timestamp),
                _ROW_OVERHEAD_BYTES + (body if layout.whole_event else 0),
                layout.key(columns),
            )
        )
    return rows


def group_writes(
    rows: Sequence[Row],
    *,
    route: Route = by_partition,
    max_rows: int = MAX_BATCH_ROWS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[Write]:
    """Rows grouped by `route`, each group cut into batches under the limits.

    Within a group, rows of one partition of one table are placed next to each other, so a
    batch carries few partitions with many rows each: Cassandra applies a batch as one
    mutation per partition, and fewer, larger mutations cost it about a fifth less CPU per
    row than rows in arrival order (measured in `benchmarks/audit_bench.py`).
    The same (table, primary key) twice in one batch would be one mutation anyway; duplicates
    are dropped here so a batch never carries a row twice.
    """
    groups: dict[Hashable, dict[tuple[str, tuple[Any, ...]], list[Row]]] = {}
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    for row in rows:
        identity = (row.table, row.key)
        if identity in seen:
            continue
        seen.add(identity)
        partitions = groups.setdefault(route(row), {})
        partitions.setdefault((row.table, row.partition), []).append(row)
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
