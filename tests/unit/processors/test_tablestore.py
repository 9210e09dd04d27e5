"""The coordinator's rocksdb tables are written without rocksdb's write-ahead log: the Kafka
changelog is the log, and the WAL cost about three times the CPU of each put."""

from __future__ import annotations

from pathlib import Path

import faust

from sdlcflow.processors import tablestore


def _store(tmp_path: Path) -> tablestore.Store:
    app = faust.App("test-tablestore", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    store=f"{tablestore.SCHEME}://")  # fmt: skip
    table = app.Table("states", key_type=bytes, value_type=bytes)
    return tablestore.Store(f"{tablestore.SCHEME}://", app, table)


def test_the_store_url_scheme_resolves_to_the_wal_free_store() -> None:
    assert faust.stores.by_url(f"{tablestore.SCHEME}://") is tablestore.Store


def test_table_writes_leave_the_write_ahead_log_empty_and_read_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    db = store._db_for_partition(0)
    value = b"repository state " * 3_000
    for number in range(50):
        db.put(f"acme/repo-{number}".encode(), value)
    wal_files = list(Path(store.partition_path(0)).glob("*.log"))
    assert wal_files and all(path.stat().st_size == 0 for path in wal_files)
    assert db.get(b"acme/repo-49") == value
