import pytest

from sdlcflow.agents.reference import (
    ArtifactMismatch,
    DependencyUpdateInput,
    DeployInput,
    EnvRenameInput,
    PolicyInputRequest,
    Workspace,
    build_artifact,
    collect_policy_inputs,
    deploy,
    rename_env_var,
    update_dependency,
)
from sdlcflow.artifacts import ReleaseAction, Releases, digest_of
from sdlcflow.gitops import read_blob
from sdlcflow.gitops.sample import SampleRepo

NEW_NAME = "AUTH_SIGNING_SECRET"


def _deploy(
    sample: SampleRepo, sha: str, env: str = "staging", at: int = 1, **kw: object
) -> DeployInput:
    return DeployInput(sample.remote, sha, env, by="agent:deploy-1", at=at, why="test", **kw)  # type: ignore[arg-type]


def _bumped(sample: SampleRepo, workspace: Workspace) -> str:
    return update_dependency(
        DependencyUpdateInput(sample.remote, sample.main, "deps/pyjwt", "pyjwt", "3.0.0"), workspace
    ).head


def _renamed(sample: SampleRepo, workspace: Workspace, paths: tuple[str, ...] | None) -> str:
    request = EnvRenameInput(
        sample.remote, sample.main, "env/rename", "AUTH_SECRET", NEW_NAME, paths=paths
    )
    return rename_env_var(request, workspace).head


class TestDeployAgent:
    """Deploys a deterministic artifact; smoke runs in the staged slot; failures roll back."""

    def test_deploying_main_to_staging_goes_live_after_a_passing_smoke(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        result = deploy(_deploy(sample, sample.main), workspace)
        assert result.live and result.action is ReleaseAction.ACTIVATED
        assert (result.active_sha, result.active_artifact) == (sample.main, result.artifact)
        assert result.smoke_log is not None and b"smoke ok" in workspace.store.get(result.smoke_log)
        assert Releases(workspace.store).current("staging") is not None

    def test_an_auth_major_bump_fails_smoke_and_the_previous_release_stays(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        good = deploy(_deploy(sample, sample.main), workspace)
        bad = deploy(_deploy(sample, _bumped(sample, workspace), at=2), workspace)
        assert bad.action is ReleaseAction.REJECTED and not bad.live
        assert (bad.active_sha, bad.active_artifact) == (sample.main, good.artifact)
        assert bad.smoke_log is not None and b"IncompatibleAuthLibrary" in workspace.store.get(
            bad.smoke_log
        )
        current = Releases(workspace.store).current("staging")
        assert current is not None and current.source_sha == sample.main

    def test_a_naive_env_rename_breaks_login_and_a_thorough_one_does_not(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        naive = deploy(
            _deploy(sample, _renamed(sample, workspace, ("service/config.py",))), workspace
        )
        assert naive.action is ReleaseAction.REJECTED
        assert naive.smoke_log is not None and NEW_NAME.encode() in workspace.store.get(
            naive.smoke_log
        )
        thorough_head = rename_env_var(
            EnvRenameInput(sample.remote, sample.main, "env/rename-all", "AUTH_SECRET", NEW_NAME),
            workspace,
        ).head
        assert deploy(_deploy(sample, thorough_head, at=2), workspace).live

    def test_deploying_twice_gives_the_same_outputs(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        first = deploy(_deploy(sample, sample.main), workspace)
        second = deploy(_deploy(sample, sample.main, at=5), workspace)
        assert first.outputs() == second.outputs() and not second.changed
        assert len(Releases(workspace.store).history("staging")) == 1

    def test_promotion_insists_on_the_verified_artifact(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        staged = deploy(_deploy(sample, sample.main), workspace)
        prod = deploy(
            _deploy(sample, sample.main, env="prod", expected_artifact=staged.artifact), workspace
        )
        assert prod.live and prod.artifact == staged.artifact
        with pytest.raises(ArtifactMismatch, match="re-run them"):
            deploy(
                _deploy(
                    sample,
                    _bumped(sample, workspace),
                    env="prod",
                    expected_artifact=staged.artifact,
                ),
                workspace,
            )

    def test_the_artifact_is_the_same_for_the_same_sha(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        assert build_artifact(sample.remote, sample.main, workspace) == build_artifact(
            sample.remote, sample.main, workspace
        )

    def test_the_smoke_check_does_not_see_the_agents_secrets(
        self, sample: SampleRepo, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(NEW_NAME, "leaked-from-the-agent")  # would hide the naive rename's bug
        result = deploy(
            _deploy(sample, _renamed(sample, workspace, ("service/config.py",))), workspace
        )
        assert result.action is ReleaseAction.REJECTED


class TestPolicyInputCollector:
    """Collects what policies need: files, dependency moves, env renames, migrations, digests."""

    def test_dependency_bump_is_reported_with_the_major_change(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = _bumped(sample, workspace)
        inputs = collect_policy_inputs(
            PolicyInputRequest(sample.remote, sample.main, head), workspace
        )
        assert inputs.files_changed == ("requirements.lock", "requirements.txt")
        assert {
            (c.source, c.package, c.old, c.new, c.major_change) for c in inputs.dependency_changes
        } == {
            ("requirements.txt", "pyjwt", "2.8.0", "3.0.0", True),
            ("requirements.lock", "pyjwt", "2.8.0", "3.0.0", True),
        }
        lock = read_blob(sample.remote, head, "requirements.lock")
        assert lock is not None and inputs.lockfile_digest == digest_of(lock)
        assert inputs.env_var_changes == ()

    def test_naive_env_rename_is_reported_with_the_places_still_using_the_old_name(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = _renamed(sample, workspace, ("service/config.py",))
        inputs = collect_policy_inputs(
            PolicyInputRequest(sample.remote, sample.main, head), workspace
        )
        (change,) = inputs.env_var_changes
        assert (change.name, change.kind, change.new_name) == ("AUTH_SECRET", "renamed", NEW_NAME)
        assert {hit.path for hit in change.still_referenced} == {
            "deploy/prod.env",
            "deploy/staging.env",
            "tests/test_config.py",
        }
        assert dict(inputs.env_vars_unset) == {
            "deploy/prod.env": (NEW_NAME,),
            "deploy/staging.env": (NEW_NAME,),
        }
        assert NEW_NAME in inputs.env_vars_read

    def test_thorough_rename_leaves_no_stale_reference(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = _renamed(sample, workspace, None)
        inputs = collect_policy_inputs(
            PolicyInputRequest(sample.remote, sample.main, head), workspace
        )
        (change,) = inputs.env_var_changes
        assert change.still_referenced == ()
        assert dict(inputs.env_vars_unset) == {"deploy/prod.env": (), "deploy/staging.env": ()}

    def test_migrations_report_whether_a_rollback_is_declared(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = sample.commit(
            sample.main,
            "schema",
            {
                "migrations/0002_add_email.up.sql": b"ALTER TABLE users ADD email TEXT;\n",
                "migrations/0002_add_email.down.sql": b"ALTER TABLE users DROP email;\n",
                "migrations/0003_drop_names.sql": b"ALTER TABLE users DROP name;\n",
                "migrations/0004_index.sql": (
                    b"CREATE INDEX i ON users (email);\n-- rollback: DROP INDEX i;\n"
                ),
            },
        )
        inputs = collect_policy_inputs(
            PolicyInputRequest(sample.remote, sample.main, head), workspace
        )
        assert {(m.path, m.rollback_declared, m.rollback_path) for m in inputs.migrations} == {
            ("migrations/0002_add_email.up.sql", True, "migrations/0002_add_email.down.sql"),
            ("migrations/0003_drop_names.sql", False, None),
            ("migrations/0004_index.sql", True, None),
        }

    def test_the_exact_diff_is_stored_and_the_result_is_json_ready(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = _bumped(sample, workspace)
        inputs = collect_policy_inputs(
            PolicyInputRequest(sample.remote, sample.main, head), workspace
        )
        assert b"+pyjwt==3.0.0" in workspace.store.get(inputs.diff_digest)
        data = inputs.to_dict()
        assert data["dependency_changes"][0]["package"] == "pyjwt"
        again = collect_policy_inputs(
            PolicyInputRequest(sample.remote, sample.main, head), workspace
        )
        assert again == inputs
