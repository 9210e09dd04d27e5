import os
from pathlib import Path

import pytest

from sdlcflow.gitops import (
    GitError,
    GitIdentity,
    PushStatus,
    RefNotFound,
    branch_head,
    checkout,
    clone_at,
    commit_change,
    create_remote,
    diff,
    git,
    grep_word,
    list_files,
    read_blob,
    resolve,
)
from sdlcflow.gitops.sample import SAMPLE_FILES, SampleRepo, write_sample_service

AUTHOR = GitIdentity("Test Author", "author@example.invalid")


class TestRemotes:
    """A template directory becomes a bare remote with one reproducible commit."""

    def test_the_remote_is_bare_and_main_holds_the_template(self, sample: SampleRepo) -> None:
        assert git(["rev-parse", "--is-bare-repository"], cwd=sample.remote).text.strip() == "true"
        assert branch_head(sample.remote, "main") == sample.main
        assert list_files(sample.remote, sample.main) == tuple(sorted(SAMPLE_FILES))

    def test_the_same_template_identity_and_time_give_the_same_sha(
        self, tmp_path: Path, sample: SampleRepo
    ) -> None:
        template = write_sample_service(tmp_path / "t")
        again = create_remote(template, tmp_path / "again.git", identity=AUTHOR, when=1_704_067_200)
        other = create_remote(template, tmp_path / "other.git", identity=AUTHOR, when=1_704_067_201)
        assert again != other
        assert (
            create_remote(template, tmp_path / "third.git", identity=AUTHOR, when=1_704_067_200)
            == again
        )

    def test_global_git_config_is_not_used(
        self, tmp_path: Path, sample: SampleRepo, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        config = tmp_path / "evil.gitconfig"
        config.write_text("[user]\n\tname = Someone Else\n")
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
        sha = sample.commit(sample.main, "feature", {"NOTES.md": b"x\n"})
        author = git(["show", "-s", "--format=%an <%ae>", sha], cwd=sample.remote).text.strip()
        assert author == f"{sample.identity.name} <{sample.identity.email}>"


class TestCheckoutAndRefs:
    """Checkouts are fresh temp trees at an exact SHA; refs resolve or fail clearly."""

    def test_checkout_gives_the_tree_at_the_sha_and_is_removed_after(
        self, sample: SampleRepo
    ) -> None:
        head = sample.commit(sample.main, "feature", {"service/extra.py": b"VALUE = 1\n"})
        with checkout(sample.remote, sample.main, parent=sample.scratch) as tree:
            assert tree.sha == sample.main
            assert not (tree.path / "service/extra.py").exists()
            assert resolve(tree.path, "HEAD") == sample.main
            kept = tree.path
        assert not kept.exists()
        with checkout(sample.remote, head[:10], parent=sample.scratch) as tree:
            assert tree.sha == head
            assert (tree.path / "service/extra.py").read_text() == "VALUE = 1\n"

    def test_resolving_an_unknown_ref_names_it(self, sample: SampleRepo) -> None:
        with pytest.raises(RefNotFound, match="no-such-branch"):
            resolve(sample.remote, "no-such-branch")
        assert branch_head(sample.remote, "no-such-branch") is None

    def test_clone_refuses_a_non_empty_directory(self, sample: SampleRepo) -> None:
        dest = sample.scratch / "busy"
        dest.mkdir()
        (dest / "file").write_text("x")
        with pytest.raises(GitError, match="not empty"):
            clone_at(sample.remote, sample.main, dest)


class TestCommitAndPush:
    """Branches are published with compare-and-swap: never overwritten blindly."""

    def test_a_new_branch_is_pushed_and_repeating_the_same_commit_is_a_no_op(
        self, sample: SampleRepo
    ) -> None:
        first = commit_change(
            sample.remote,
            sample.main,
            "bump",
            {"VERSION": b"2\n"},
            message="m",
            identity=AUTHOR,
            when=5,
            scratch=sample.scratch,
        )
        again = commit_change(
            sample.remote,
            sample.main,
            "bump",
            {"VERSION": b"2\n"},
            message="m",
            identity=AUTHOR,
            when=5,
            scratch=sample.scratch,
        )
        assert (first.push, again.push) == (PushStatus.PUSHED, PushStatus.ALREADY)
        assert first.sha == again.sha == branch_head(sample.remote, "bump")
        assert first.paths == ("VERSION",)

    def test_a_branch_moved_by_someone_else_is_not_overwritten(self, sample: SampleRepo) -> None:
        theirs = sample.commit(sample.main, "shared", {"A": b"theirs\n"})
        mine = commit_change(
            sample.remote,
            sample.main,
            "shared",
            {"A": b"mine\n"},
            message="m",
            identity=AUTHOR,
            when=7,
            scratch=sample.scratch,
        )
        assert mine.push is PushStatus.STALE
        assert branch_head(sample.remote, "shared") == theirs

    def test_expected_sha_allows_exactly_one_update(self, sample: SampleRepo) -> None:
        first = sample.commit(sample.main, "topic", {"A": b"1\n"})
        second = sample.commit(first, "topic", {"A": b"2\n"}, expected=first)
        assert branch_head(sample.remote, "topic") == second
        stale = commit_change(
            sample.remote,
            first,
            "topic",
            {"A": b"3\n"},
            message="m",
            identity=AUTHOR,
            when=9,
            expected=first,
            scratch=sample.scratch,
        )
        assert stale.push is PushStatus.STALE
        assert branch_head(sample.remote, "topic") == second

    def test_guard_stops_the_push(self, sample: SampleRepo) -> None:
        class LeaseLost(Exception):
            pass

        def lost() -> None:
            raise LeaseLost

        with pytest.raises(LeaseLost):
            commit_change(
                sample.remote,
                sample.main,
                "late",
                {"A": b"1\n"},
                message="m",
                identity=AUTHOR,
                when=1,
                scratch=sample.scratch,
                guard=lost,
            )
        assert branch_head(sample.remote, "late") is None

    def test_an_edit_that_changes_nothing_is_an_error(self, sample: SampleRepo) -> None:
        same = SAMPLE_FILES["README.md"].encode()
        with pytest.raises(GitError, match="nothing to commit"):
            sample.commit(sample.main, "noop", {"README.md": same})


class TestDiffAndReads:
    """Diffs are exact unified text plus the literal paths touched."""

    def test_diff_text_and_paths(self, sample: SampleRepo) -> None:
        head = sample.commit(
            sample.main,
            "change",
            {
                "service/new.py": b"X = 1\n",
                "README.md": None,
                "requirements.txt": b"pyjwt==3.0.0\n",
            },
        )
        change = diff(sample.remote, sample.main, head)
        assert change.paths == ("README.md", "requirements.txt", "service/new.py")
        assert "+pyjwt==3.0.0\n" in change.text and "-pyjwt==2.8.0\n" in change.text
        assert "deleted file mode 100644" in change.text
        applied = git(
            ["apply", "--check", "-"],
            cwd=_worktree_at(sample, sample.main),
            stdin=change.text.encode(),
        )
        assert applied.returncode == 0

    def test_read_blob_and_grep_word(self, sample: SampleRepo) -> None:
        assert (
            read_blob(sample.remote, sample.main, "requirements.txt")
            == SAMPLE_FILES["requirements.txt"].encode()
        )
        assert read_blob(sample.remote, sample.main, "absent.txt") is None
        hits = grep_word(sample.remote, sample.main, "AUTH_SECRET")
        assert {hit.path for hit in hits} >= {
            "service/config.py",
            "deploy/prod.env",
            "deploy/staging.env",
        }
        assert all("AUTH_SECRET" in hit.text and hit.line > 0 for hit in hits)
        assert grep_word(sample.remote, sample.main, "AUTH") == ()


def _worktree_at(sample: SampleRepo, sha: str) -> Path:
    dest = sample.scratch / f"wt-{os.getpid()}-{sha[:8]}"
    return clone_at(sample.remote, sha, dest).path
