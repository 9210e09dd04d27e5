"""Rows as the driver binds them, grouped into single-partition batches: pure, no I/O.

A group of rows for one partition of one table goes to Cassandra as one unlogged batch (one
mutation, one round trip); a batch is cut before it would pass Cassandra's batch size limit.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sdlcflow.audit.rows import AuditRecord, Placement
from sdlcflow.audit.tables import TABLES, TableSpec

# Cassandra refuses batches above batch_size_fail_threshold (50 KiB by default); stay well under.
MAX_BATCH_BYTES = 40 * 1024
MAX_BATCH_ROWS = 64
_ROW_OVERHEAD_BYTES = 256


@dataclass(frozen=True)
class Row:
    """One row for one table: its values in the table's column order, then the timestamp."""

    table: str
    partition: tuple[Any, ...]
    values: tuple[Any, ...]
    size: int
    key: tuple[Any, ...] = ()  # the full primary key (partition + clustering)


@dataclass(frozen=True)
class Write:
    """What goes to Cassandra in one request: rows of one partition of one table."""

    table: str
    rows: tuple[Row, ...]

    @property
    def events(self) -> int:
        return len(self.rows)


def _common(record: AuditRecord) -> tuple[Any, ...]:
    return (
        record.event_id,
        record.event_type,
        record.occurred_at,  # the driver takes ms since the epoch for a timestamp column
        record.repo,
        record.change_id,
        record.task_id,
        record.trace_id,
        record.causation_id,
        record.actor_kind,
        record.actor_id,
        record.outcome,
        record.before_sha,
        record.after_sha,
        record.topic,
        record.partition,
        record.offset,
        record.avro,
        record.json,
    )


def table_row(record: AuditRecord, placement: Placement) -> Row:
    """The bound values of `record` in the table `placement` names."""
    spec: TableSpec = TABLES[placement.table]
    extra = dict(placement.extra)
    missing = [name for name, _ in spec.extra_columns if name not in extra]
    if missing:
        raise KeyError(f"{spec.name} needs {missing} in its placement")
    values = (
        *_common(record),
        *(extra[name] for name, _ in spec.extra_columns),
        record.write_timestamp,
    )
    partition_at, key_at = _positions(spec.name)
    size = len(record.avro) + len(record.json) + _ROW_OVERHEAD_BYTES
    return Row(
        spec.name,
        tuple(values[i] for i in partition_at),
        values,
        size,
        tuple(values[i] for i in key_at),
    )


@functools.cache
def _positions(table: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indexes of a table's partition key and full primary key in its value tuple."""
    spec = TABLES[table]
    index = {name: i for i, name in enumerate(spec.column_names)}
    partition = tuple(index[name] for name in spec.partition_key)
    return partition, partition + tuple(index[name] for name in spec.clustering)


def rows_of(record: AuditRecord, places: Iterable[Placement]) -> list[Row]:
    return [table_row(record, placement) for placement in places]


def group_writes(
    rows: Sequence[Row],
    *,
    max_rows: int = MAX_BATCH_ROWS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[Write]:
    """Rows grouped by (table, partition), each group cut into batches under the limits.

    The same (table, primary key) twice in one batch would be one mutation anyway; duplicates
    are dropped here so a batch never carries a row twice.
    """
    groups: dict[tuple[str, tuple[Any, ...]], list[Row]] = {}
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    for row in rows:
        identity = (row.table, row.key)
        if identity in seen:
            continue
        seen.add(identity)
        groups.setdefault((row.table, row.partition), []).append(row)
    writes: list[Write] = []
    for (table, _), members in groups.items():
        writes += _cut(table, members, max_rows, max_bytes)
    return writes


def _cut(table: str, rows: list[Row], max_rows: int, max_bytes: int) -> list[Write]:
    writes: list[Write] = []
    current: list[Row] = []
    size = 0
    for row in rows:
        if current and (len(current) >= max_rows or size + row.size > max_bytes):
            writes.append(Write(table, tuple(current)))
            current, size = [], 0
        current.append(row)
        size += row.size
    if current:
        writes.append(Write(table, tuple(current)))
    return writes
