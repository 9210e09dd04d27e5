import json

import pytest

from sdlcflow.agents.reference import (
    AgentWorkError,
    DependencyUpdateInput,
    EnvRenameInput,
    MergeInput,
    WorkCancelled,
    Workspace,
    merge,
    rename_env_var,
    update_dependency,
)
from sdlcflow.artifacts import digest_of
from sdlcflow.gitops import MergeStatus, PushStatus, branch_head, read_blob
from sdlcflow.gitops.sample import SAMPLE_FILES, SampleRepo


def _bump(
    sample: SampleRepo, version: str = "3.0.0", branch: str = "deps/pyjwt"
) -> DependencyUpdateInput:
    return DependencyUpdateInput(sample.remote, sample.main, branch, "PyJWT", version)


class TestDependencyUpdateAgent:
    """The pin moves in requirements and lockfile on a new branch; reruns change nothing."""

    def test_bump_edits_both_files_commits_and_pushes(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        result = update_dependency(_bump(sample), workspace)
        assert result.push is PushStatus.PUSHED and result.published
        assert (result.old_version, result.new_version) == ("2.8.0", "3.0.0")
        assert result.paths == ("requirements.lock", "requirements.txt")
        assert branch_head(sample.remote, "deps/pyjwt") == result.head
        lock = read_blob(sample.remote, result.head, "requirements.lock")
        assert lock is not None and b"pyjwt==3.0.0" in lock and b"cryptography==42.0.5" in lock
        assert (
            result.lockfile_digest == digest_of(lock)
            and workspace.store.get(result.lockfile_digest) == lock
        )

    def test_running_twice_gives_the_same_outputs(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        first = update_dependency(_bump(sample), workspace)
        second = update_dependency(_bump(sample), workspace)
        assert second.push is PushStatus.ALREADY
        assert first.head == second.head and first.lockfile_digest == second.lockfile_digest

    def test_the_current_version_changes_nothing(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        result = update_dependency(_bump(sample, "2.8.0"), workspace)
        assert (result.head, result.push, result.paths) == (sample.main, None, ())
        assert branch_head(sample.remote, "deps/pyjwt") is None

    def test_an_unlocked_package_is_refused(self, sample: SampleRepo, workspace: Workspace) -> None:
        request = DependencyUpdateInput(sample.remote, sample.main, "deps/x", "requests", "2.0.0")
        with pytest.raises(AgentWorkError, match=r"not pinned in requirements\.lock"):
            update_dependency(request, workspace)

    def test_a_branch_someone_else_moved_is_not_overwritten(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        theirs = sample.commit(sample.main, "deps/pyjwt", {"NOTES": b"mine\n"})
        result = update_dependency(_bump(sample), workspace)
        assert result.push is PushStatus.STALE and not result.published
        assert branch_head(sample.remote, "deps/pyjwt") == theirs

    def test_a_lost_lease_publishes_nothing(self, sample: SampleRepo, workspace: Workspace) -> None:
        workspace.cancel.set()
        with pytest.raises(WorkCancelled):
            update_dependency(_bump(sample), workspace)
        assert branch_head(sample.remote, "deps/pyjwt") is None


class TestEnvRenameAgent:
    """Renames where told; a naive rename that misses references is possible and visible."""

    def test_naive_rename_misses_the_env_files_and_says_so(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        request = EnvRenameInput(
            sample.remote,
            sample.main,
            "env/rename",
            "AUTH_SECRET",
            "AUTH_SIGNING_SECRET",
            paths=("service/config.py",),
        )
        result = rename_env_var(request, workspace)
        assert result.paths == ("service/config.py",) and result.replacements == 2
        assert {hit.path for hit in result.remaining} == {
            "deploy/prod.env",
            "deploy/staging.env",
            "tests/test_config.py",
        }
        config = read_blob(sample.remote, result.head, "service/config.py")
        assert config is not None and b'os.environ.get("AUTH_SIGNING_SECRET"' in config

    def test_thorough_rename_leaves_no_reference(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        request = EnvRenameInput(
            sample.remote, sample.main, "env/rename", "AUTH_SECRET", "AUTH_SIGNING_SECRET"
        )
        result = rename_env_var(request, workspace)
        assert result.remaining == ()
        assert "deploy/prod.env" in result.paths and "tests/test_config.py" in result.paths

    def test_rename_is_whole_word_and_idempotent(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        base = sample.commit(
            sample.main, "main", {"service/more.py": b"AUTH_SECRET_OLD = 1\n"}, expected=sample.main
        )
        request = EnvRenameInput(sample.remote, base, "env/rename", "AUTH_SECRET", "AUTH_KEY")
        first, second = rename_env_var(request, workspace), rename_env_var(request, workspace)
        assert first.outputs() == second.outputs() and second.push is PushStatus.ALREADY
        more = read_blob(sample.remote, first.head, "service/more.py")
        assert more == b"AUTH_SECRET_OLD = 1\n"

    def test_invalid_names_are_refused(self, sample: SampleRepo, workspace: Workspace) -> None:
        with pytest.raises(AgentWorkError, match="not an environment variable name"):
            rename_env_var(
                EnvRenameInput(sample.remote, sample.main, "b", "AUTH_SECRET", "bad-name"),
                workspace,
            )


class TestMergeAgent:
    """The merge agent lands verified heads, reports conflicts as an artifact, never overwrites."""

    def test_conflicts_are_stored_as_a_report(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        bump = update_dependency(_bump(sample), workspace)
        target = sample.commit(
            sample.main,
            "main",
            {
                "requirements.txt": SAMPLE_FILES["requirements.txt"]
                .replace("2.8.0", "2.9.0")
                .encode()
            },
            expected=sample.main,
        )
        result = merge(MergeInput(sample.remote, bump.head, "main", target), workspace)
        assert result.merge.status is MergeStatus.CONFLICT and result.conflict_report is not None
        report = json.loads(workspace.store.get(result.conflict_report))
        assert [c["path"] for c in report["conflicts"]] == ["requirements.txt"]
        assert report["conflicts"][0]["hunks"][0]["theirs"] == "pyjwt==3.0.0\n"
        assert branch_head(sample.remote, "main") == target

    def test_moved_target_is_reported_and_rerun_is_identical(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        bump = update_dependency(_bump(sample), workspace)
        request = MergeInput(sample.remote, bump.head, "main", sample.main)
        landed = merge(request, workspace)
        assert landed.merge.status is MergeStatus.FAST_FORWARD
        assert merge(request, workspace).outputs() == landed.outputs()
        moved = sample.commit(bump.head, "main", {"NOTES": b"x\n"}, expected=bump.head)
        late = merge(MergeInput(sample.remote, sample.main, "main", bump.head), workspace)
        assert late.merge.status is MergeStatus.TARGET_MOVED and late.merge.actual_target == moved
