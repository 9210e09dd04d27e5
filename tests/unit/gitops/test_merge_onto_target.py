import gzip
import io
import tarfile

import pytest

from sdlcflow.artifacts import digest_of
from sdlcflow.gitops import (
    GitIdentity,
    MergeResult,
    MergeStatus,
    branch_head,
    is_ancestor,
    merge_onto,
    parse_hunks,
    read_blob,
    tree_archive,
)
from sdlcflow.gitops.sample import SampleRepo

MERGER = GitIdentity("merge bot", "merge@example.invalid")


def _merge(sample: SampleRepo, head: str, expected: str, when: int = 1_900_000_000) -> MergeResult:
    return merge_onto(
        sample.remote,
        head,
        "main",
        expected_target=expected,
        identity=MERGER,
        when=when,
        scratch=sample.scratch,
    )


class TestMergeOnto:
    """Three-way merges land only on the expected target SHA and report conflicts as hunks."""

    def test_a_head_ahead_of_the_target_fast_forwards_to_the_exact_verified_sha(
        self, sample: SampleRepo
    ) -> None:
        head = sample.commit(sample.main, "feature", {"service/new.py": b"X = 1\n"})
        result = _merge(sample, head, sample.main)
        assert result.status is MergeStatus.FAST_FORWARD and result.landed
        assert branch_head(sample.remote, "main") == head == result.result_sha

    def test_diverged_clean_changes_make_a_merge_commit_with_both_parents(
        self, sample: SampleRepo
    ) -> None:
        head = sample.commit(sample.main, "feature", {"service/new.py": b"X = 1\n"})
        target = sample.commit(
            sample.main, "main", {"README.md": b"# changed\n"}, expected=sample.main
        )
        result = _merge(sample, head, target)
        assert result.status is MergeStatus.MERGED
        merged = branch_head(sample.remote, "main")
        assert merged == result.result_sha
        assert is_ancestor(sample.remote, head, merged) and is_ancestor(
            sample.remote, target, merged
        )
        assert read_blob(sample.remote, merged, "README.md") == b"# changed\n"
        assert read_blob(sample.remote, merged, "service/new.py") == b"X = 1\n"

    def test_conflicts_are_reported_as_hunks_and_nothing_is_written(
        self, sample: SampleRepo
    ) -> None:
        head = sample.commit(sample.main, "dep-bump", {"requirements.txt": b"pyjwt==3.0.0\n"})
        target = sample.commit(
            sample.main, "main", {"requirements.txt": b"pyjwt==2.9.0\n"}, expected=sample.main
        )
        result = _merge(sample, head, target)
        assert result.status is MergeStatus.CONFLICT and not result.landed
        assert result.result_sha is None
        assert branch_head(sample.remote, "main") == target
        (conflict,) = result.conflicts
        assert conflict.path == "requirements.txt"
        assert conflict.stages == (1, 2, 3)
        assert any("content" in kind for kind in conflict.kinds)
        (hunk,) = conflict.hunks
        assert (hunk.ours, hunk.theirs) == ("pyjwt==2.9.0\n", "pyjwt==3.0.0\n")
        assert "pyjwt==2.8.0" in hunk.base

    def test_modify_delete_conflict_is_reported_without_hunks(self, sample: SampleRepo) -> None:
        head = sample.commit(sample.main, "drop", {"deploy/prod.env": None})
        target = sample.commit(
            sample.main, "main", {"deploy/prod.env": b"AUTH_SECRET=x\n"}, expected=sample.main
        )
        result = _merge(sample, head, target)
        assert result.status is MergeStatus.CONFLICT
        (conflict,) = result.conflicts
        assert conflict.path == "deploy/prod.env"
        assert any("modify/delete" in kind for kind in conflict.kinds)
        assert conflict.stages == (1, 2)

    def test_the_optimistic_check_fails_when_the_target_moved(self, sample: SampleRepo) -> None:
        head = sample.commit(sample.main, "feature", {"service/new.py": b"X = 1\n"})
        moved = sample.commit(
            sample.main, "main", {"README.md": b"# moved\n"}, expected=sample.main
        )
        result = _merge(sample, head, sample.main)
        assert result.status is MergeStatus.TARGET_MOVED and not result.landed
        assert result.actual_target == moved
        assert branch_head(sample.remote, "main") == moved

    def test_merging_twice_with_the_same_inputs_gives_the_same_result(
        self, sample: SampleRepo
    ) -> None:
        head = sample.commit(sample.main, "feature", {"service/new.py": b"X = 1\n"})
        target = sample.commit(
            sample.main, "main", {"README.md": b"# changed\n"}, expected=sample.main
        )
        first = _merge(sample, head, target)
        second = _merge(sample, head, target)
        assert first.status is second.status is MergeStatus.MERGED
        assert first.result_sha == second.result_sha == branch_head(sample.remote, "main")

    def test_a_head_already_in_the_target_is_up_to_date(self, sample: SampleRepo) -> None:
        result = _merge(sample, sample.main, sample.main)
        assert result.status is MergeStatus.UP_TO_DATE
        assert result.result_sha == sample.main

    def test_a_lost_lease_stops_the_push(self, sample: SampleRepo) -> None:
        head = sample.commit(sample.main, "feature", {"service/new.py": b"X = 1\n"})

        class LeaseLost(Exception):
            pass

        def guard() -> None:
            raise LeaseLost

        with pytest.raises(LeaseLost):
            merge_onto(
                sample.remote,
                head,
                "main",
                expected_target=sample.main,
                identity=MERGER,
                when=1,
                scratch=sample.scratch,
                guard=guard,
            )
        assert branch_head(sample.remote, "main") == sample.main


class TestParseHunks:
    """diff3 conflict markers become hunks with line numbers."""

    def test_two_hunks_with_base_sections(self) -> None:
        text = (
            "a\n<<<<<<< ours\nx\n||||||| base\nb\n=======\ny\n>>>>>>> theirs\nc\n"
            "<<<<<<< o\n1\n=======\n2\n>>>>>>> t\n"
        )
        first, second = parse_hunks(text)
        assert (first.start_line, first.ours, first.base, first.theirs) == (2, "x\n", "b\n", "y\n")
        assert (second.start_line, second.ours, second.base, second.theirs) == (
            10,
            "1\n",
            "",
            "2\n",
        )


class TestTreeArchive:
    """A commit's tree packs into a reproducible tarball: sorted entries, fixed metadata."""

    def test_archive_is_byte_identical_across_builds_and_holds_the_tree(
        self, sample: SampleRepo
    ) -> None:
        first, second = (
            tree_archive(sample.remote, sample.main),
            tree_archive(sample.remote, sample.main),
        )
        assert digest_of(first) == digest_of(second)
        with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert names == sorted(names)
            assert {m.mtime for m in members} == {0} and {m.uid for m in members} == {0}
            reqs = tar.extractfile("requirements.txt")
            assert reqs is not None and reqs.read() == read_blob(
                sample.remote, sample.main, "requirements.txt"
            )
        assert gzip.decompress(first)  # a valid gzip stream

    def test_same_tree_at_another_commit_is_the_same_artifact(self, sample: SampleRepo) -> None:
        changed = sample.commit(sample.main, "b1", {"NOTES": b"1\n"})
        reverted = sample.commit(changed, "b1", {"NOTES": None}, expected=changed)
        assert reverted != sample.main
        assert tree_archive(sample.remote, reverted) == tree_archive(sample.remote, sample.main)
        assert tree_archive(sample.remote, changed) != tree_archive(sample.remote, sample.main)
