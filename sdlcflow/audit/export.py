"""Exporting audit rows to CSV, JSON Lines or Parquet, streamed hour by hour.

Every format carries the filter columns, the JSON rendering and the Avro bytes (hex in CSV and
JSONL, binary in Parquet), so an export can be re-decoded with any Schema-Registry-aware tool.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from sdlcflow.audit.model import AuditRow
from sdlcflow.errors import SdlcflowError


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


class ExportError(SdlcflowError):
    """The export file could not be written."""


FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "occurred_at",
    "repo",
    "change_id",
    "task_id",
    "trace_id",
    "causation_id",
    "actor_kind",
    "actor_id",
    "outcome",
    "before_sha",
    "after_sha",
    "topic",
    "partition",
    "offset",
    "json",
    "avro",
)


def record(row: AuditRow, *, binary: bool) -> dict[str, Any]:
    """One exported record; Avro bytes as hex unless the format holds binary."""
    return {**row.summary(), "json": row.json, "avro": row.avro if binary else row.avro.hex()}


def export(chunks: Iterable[list[AuditRow]], fmt: ExportFormat, out: Path) -> int:
    """Write every row of `chunks` (each time-ordered) to `out`; the number of rows written."""
    try:
        if fmt is ExportFormat.PARQUET:
            return _parquet(chunks, out)
        with out.open("w", encoding="utf-8", newline="") as handle:
            if fmt is ExportFormat.CSV:
                writer = csv.DictWriter(handle, fieldnames=FIELDS)
                writer.writeheader()
                return _each(chunks, lambda r: writer.writerow(record(r, binary=False)))
            return _each(
                chunks,
                lambda r: handle.write(orjson.dumps(record(r, binary=False)).decode() + "\n"),
            )
    except OSError as exc:
        raise ExportError(
            f"cannot write {out}: {exc}; check the directory and permissions"
        ) from exc


def _each(chunks: Iterable[list[AuditRow]], write: Any) -> int:
    written = 0
    for chunk in chunks:
        for row in chunk:
            write(row)
            written += 1
    return written


def _parquet(chunks: Iterable[list[AuditRow]], out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("occurred_at", pa.timestamp("ms", tz="UTC")),
            ("repo", pa.string()),
            ("change_id", pa.string()),
            ("task_id", pa.string()),
            ("trace_id", pa.string()),
            ("causation_id", pa.string()),
            ("actor_kind", pa.string()),
            ("actor_id", pa.string()),
            ("outcome", pa.string()),
            ("before_sha", pa.string()),
            ("after_sha", pa.string()),
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("json", pa.string()),
            ("avro", pa.binary()),
        ]
    )
    written = 0
    with pq.ParquetWriter(str(out), schema) as writer:
        for chunk in chunks:
            if not chunk:
                continue
            records = [record(r, binary=True) for r in chunk]
            writer.write_table(pa.Table.from_pylist(records, schema=schema))
            written += len(records)
        if written == 0:
            writer.write_table(schema.empty_table())
    return written
