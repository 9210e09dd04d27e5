"""Exports write every row once, in order, in each format, Avro bytes preserved."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from sdlcflow.audit.export import ExportFormat, export
from sdlcflow.audit.model import AuditRow


def _row(i: int) -> AuditRow:
    return AuditRow(
        event_id=f"e-{i}",
        event_type="TaskCompleted",
        occurred_at=1_700_000_000_000 + i,
        repo="acme/web",
        change_id="c1",
        task_id=None,
        trace_id="a" * 32,
        causation_id=None,
        actor_kind="coordinator",
        actor_id="coordinator",
        outcome="completed",
        before_sha=None,
        after_sha="h",
        topic="sdlc.coordinator",
        partition=1,
        offset=i,
        json='{"envelope":{},"payload":{}}',
        avro=bytes([0, i, 255]),
    )


CHUNKS = [[_row(0), _row(1)], [], [_row(2)]]


class TestExport:
    """Each format round-trips the rows."""

    @pytest.mark.parametrize("fmt", list(ExportFormat))
    def test_every_row_is_written_once_in_order(self, fmt: ExportFormat, tmp_path: Path) -> None:
        out = tmp_path / f"out.{fmt.value}"
        assert export(iter(CHUNKS), fmt, out) == 3
        if fmt is ExportFormat.PARQUET:
            table = pq.read_table(out)
            ids, avro = table.column("event_id").to_pylist(), table.column("avro").to_pylist()
        elif fmt is ExportFormat.CSV:
            with out.open(newline="") as handle:
                records = list(csv.DictReader(handle))
            ids, avro = (
                [r["event_id"] for r in records],
                [bytes.fromhex(r["avro"]) for r in records],
            )
        else:
            records = [orjson.loads(line) for line in out.read_text().splitlines()]
            ids, avro = (
                [r["event_id"] for r in records],
                [bytes.fromhex(r["avro"]) for r in records],
            )
        assert ids == ["e-0", "e-1", "e-2"]
        assert avro == [bytes([0, i, 255]) for i in range(3)]

    def test_an_empty_window_still_writes_a_readable_parquet_file(self, tmp_path: Path) -> None:
        out = tmp_path / "empty.parquet"
        assert export(iter([]), ExportFormat.PARQUET, out) == 0
        assert pq.read_table(out).num_rows == 0
