"""Tags and promotions as append-only records: a name points at a digest, said by someone, when
and why. Moving a tag appends; the history of every name stays readable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdlcflow.artifacts._journal import Journal
from sdlcflow.artifacts._store import (
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    check_digest,
)


@dataclass(frozen=True)
class TagRecord:
    """`name` pointed at `digest` from `at` (ms since the epoch), because `by` said `why`."""

    seq: int
    name: str
    digest: str
    by: str
    at: int
    why: str

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TagRecord:
        return cls(
            seq=int(record["seq"]),
            name=str(record["name"]),
            digest=str(record["digest"]),
            by=str(record["by"]),
            at=int(record["at"]),
            why=str(record["why"]),
        )


class Tags:
    """The tag log of one artifact store (`<root>/tags.jsonl`)."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store
        self._journal = Journal(store.root / "tags.jsonl")

    def tag(self, name: str, digest: str, *, by: str, at: int, why: str) -> TagRecord:
        """Point `name` at `digest`; a no-op returning the existing record if it already does."""
        check_digest(digest)
        if not name.strip() or not by.strip():
            raise ArtifactError("a tag needs a non-empty name and a non-empty 'by' (who tags it)")
        if not self._store.exists(digest):
            raise ArtifactNotFound(
                f"cannot tag {digest} as {name!r}: it is not in the store; put() it first"
            )
        with self._journal.transaction() as tx:
            latest = _latest(tx.read(), name)
            if latest is not None and latest.digest == digest:
                return latest
            record = tx.append({"name": name, "digest": digest, "by": by, "at": at, "why": why})
        return TagRecord.from_record(record)

    def resolve(self, name: str) -> str | None:
        """The digest `name` points at now, or None if it was never tagged."""
        latest = _latest(self._journal.read(), name)
        return None if latest is None else latest.digest

    def history(self, name: str | None = None) -> tuple[TagRecord, ...]:
        """Every tag record (of one name, if given), oldest first."""
        records = (TagRecord.from_record(r) for r in self._journal.read())
        return tuple(r for r in records if name is None or r.name == name)


def _latest(records: tuple[dict[str, Any], ...], name: str) -> TagRecord | None:
    for record in reversed(records):
        if record.get("name") == name:
            return TagRecord.from_record(record)
    return None
