"""An append-only JSON-lines log whose records are hash-chained, so edits and deletions show.

Tag records and release records are journals: each line carries its sequence number and the
sha256 of the line before it. Appends happen under an exclusive file lock; reads re-check the
whole chain and refuse a log that was rewritten.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdlcflow.errors import SdlcflowError

GENESIS = "0" * 64


class JournalTampered(SdlcflowError):
    """A journal line was edited, removed or reordered after it was written."""


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


class Journal:
    """One append-only, hash-chained JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock_path = path.with_name(path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self._path

    def read(self) -> tuple[dict[str, Any], ...]:
        """Every record, oldest first, after checking the chain end to end."""
        records: list[dict[str, Any]] = []
        prev = GENESIS
        if not self._path.exists():
            return ()
        with self._path.open("rb") as handle:
            for number, line in enumerate(handle):
                record = self._decode(number, line)
                if record.get("seq") != number or record.get("prev") != prev:
                    raise JournalTampered(
                        f"{self._path} line {number + 1} does not follow line {number}: the "
                        "journal was edited or truncated; restore it from a replica or the "
                        "audit log"
                    )
                records.append(record)
                prev = _line_hash(line)
        return tuple(records)

    @contextmanager
    def transaction(self) -> Iterator[JournalTransaction]:
        """Hold the journal's lock to read and append as one step (e.g. check-then-deploy)."""
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield JournalTransaction(self)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record (taking the lock) and return it with its `seq` and `prev`."""
        with self.transaction() as tx:
            return tx.append(fields)

    def _append_locked(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        existing = self._path.read_bytes().splitlines(keepends=True) if self._path.exists() else []
        self.read()  # never extend a chain that was already broken
        prev = _line_hash(existing[-1]) if existing else GENESIS
        record = {**fields, "seq": len(existing), "prev": prev}
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, _encode(record))
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def _decode(self, number: int, line: bytes) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not line.endswith(b"\n"):
            raise JournalTampered(
                f"{self._path} line {number + 1} is not a complete JSON record; the journal was "
                "damaged, restore it from a replica or the audit log"
            )
        return record


class JournalTransaction:
    """Reads and appends made while the journal's lock is held."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def read(self) -> tuple[dict[str, Any], ...]:
        return self._journal.read()

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self._journal._append_locked(fields)
