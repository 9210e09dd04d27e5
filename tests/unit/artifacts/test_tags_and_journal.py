import json
from pathlib import Path

import pytest

from sdlcflow.artifacts import (
    ArtifactNotFound,
    ArtifactStore,
    Journal,
    JournalTampered,
    Tags,
    digest_of,
)


class TestJournal:
    """Journals are append-only and hash-chained: any edit, deletion or reorder is detected."""

    def test_records_get_sequence_numbers_and_chain_to_the_previous_line(
        self, tmp_path: Path
    ) -> None:
        journal = Journal(tmp_path / "log.jsonl")
        first = journal.append({"what": "a"})
        second = journal.append({"what": "b"})
        assert (first["seq"], second["seq"]) == (0, 1)
        assert first["prev"] == "0" * 64 and second["prev"] != first["prev"]
        assert [r["what"] for r in journal.read()] == ["a", "b"]

    def test_an_edited_line_is_detected(self, tmp_path: Path) -> None:
        journal = Journal(tmp_path / "log.jsonl")
        for what in ("a", "b", "c"):
            journal.append({"what": what})
        lines = journal.path.read_text().splitlines()
        edited = json.loads(lines[0]) | {"what": "forged"}
        lines[0] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
        journal.path.write_text("\n".join(lines) + "\n")
        with pytest.raises(JournalTampered, match="line 2"):
            journal.read()

    def test_a_deleted_line_is_detected_and_blocks_further_appends(self, tmp_path: Path) -> None:
        journal = Journal(tmp_path / "log.jsonl")
        for what in ("a", "b", "c"):
            journal.append({"what": what})
        lines = journal.path.read_text().splitlines(keepends=True)
        journal.path.write_text(lines[0] + lines[2])
        with pytest.raises(JournalTampered):
            journal.read()
        with pytest.raises(JournalTampered):
            journal.append({"what": "d"})


class TestTags:
    """Tags and promotions are append-only records naming digest, who, when and why."""

    def test_tag_records_who_when_why_and_resolve_gives_the_latest(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        tags = Tags(store)
        v1, v2 = store.put(b"build 1"), store.put(b"build 2")
        tags.tag("verified", v1, by="agent:test-7", at=1_000, why="tests passed on abc")
        record = tags.tag("verified", v2, by="human:ana", at=2_000, why="approved")
        assert tags.resolve("verified") == v2
        assert (record.by, record.at, record.why) == ("human:ana", 2_000, "approved")
        assert [r.digest for r in tags.history("verified")] == [v1, v2]

    def test_retagging_the_same_digest_is_idempotent(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        tags = Tags(store)
        digest = store.put(b"build")
        first = tags.tag("staging", digest, by="agent:deploy", at=1, why="deploy")
        again = tags.tag("staging", digest, by="agent:deploy", at=2, why="deploy")
        assert again == first
        assert len(tags.history()) == 1

    def test_tagging_an_unknown_digest_is_refused(self, tmp_path: Path) -> None:
        tags = Tags(ArtifactStore(tmp_path))
        with pytest.raises(ArtifactNotFound):
            tags.tag("x", digest_of(b"absent"), by="a", at=1, why="w")
        assert tags.resolve("x") is None
