"""The reference bindings run under the SDK's AgentEnvironment on real git repositories."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from sdlcflow.agents import (
    AgentEnvironment,
    Failed,
    Lost,
    Outputs,
    Succeeded,
    TaskContract,
    definition_of,
    task_contract,
)
from sdlcflow.agents._execution import compensate
from sdlcflow.agents.bindings import (
    REFERENCE_AGENTS,
    deploy_agent,
    lint_agent,
    merge_agent,
    policy_agent,
    promote_agent,
    suite_agent,
)
from sdlcflow.agents.bindings._runtime import BindingConfigError, check_results, remote_for
from sdlcflow.agents.bindings.policy import change_kind, policy_input
from sdlcflow.agents.reference import (
    DependencyUpdateInput,
    PolicyInputs,
    Workspace,
    update_dependency,
)
from sdlcflow.approvals.evidence import EvidenceStore
from sdlcflow.artifacts import ArtifactStore, ReleaseAction, Releases
from sdlcflow.core.events import ChangeFacts, PolicyDecision
from sdlcflow.gitops import branch_head
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.policy.bundle import PolicyBundle
from sdlcflow.policy.inputs import ChangeKind

REPO = "acme/login"
_FAILING_TEST = b"def test_login_is_broken() -> None:\n    assert 1 + 1 == 3\n"


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SampleRepo:
    repo = SampleRepo.create(tmp_path / "git")
    monkeypatch.setenv("SDLCFLOW_GIT_REMOTES", json.dumps({REPO: str(repo.remote)}))
    monkeypatch.setenv("SDLCFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SDLCFLOW_GIT_ROOT", raising=False)
    monkeypatch.delenv("SDLCFLOW_POLICY_BUNDLE", raising=False)
    monkeypatch.delenv("SDLCFLOW_POLICY_MODE", raising=False)
    monkeypatch.delenv("SDLCFLOW_EVIDENCE_DIR", raising=False)
    monkeypatch.delenv("SDLCFLOW_MERGE_TARGET", raising=False)
    return repo


def _feature(sample: SampleRepo) -> str:
    return sample.commit(sample.main, "feature", {"service/extra.py": b'"""Extra."""\n'})


def _contract(capability: str, head: str, base: str, **kw: object) -> TaskContract:
    return task_contract(capability, head=head, base=base, **kw)  # type: ignore[arg-type]


def _run(fn: object, contract: TaskContract, env: AgentEnvironment | None = None) -> object:
    return (env or AgentEnvironment(repo=REPO)).run(fn, contract)  # type: ignore[arg-type]


def _store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "data" / "artifacts")


class TestRegistry:
    """`sdlcflow run agent <capability>` finds a binding for every agent step of the templates."""

    def test_every_agent_capability_in_the_templates_has_a_binding(self) -> None:
        templates = Path(__file__).resolve().parents[3] / "sdlcflow" / "templates"
        wanted = set()
        for path in templates.glob("*.yaml"):
            text = path.read_text()
            for block in text.split("  - id: ")[1:]:
                capability = block.split("capability: ")[1].split()[0]
                if "authority: human" not in block:
                    wanted.add(capability)
        assert wanted <= set(REFERENCE_AGENTS)
        for capability, fn in REFERENCE_AGENTS.items():
            assert definition_of(fn).capability == capability


class TestRemotes:
    """A repository's remote comes from SDLCFLOW_GIT_REMOTES, else SDLCFLOW_GIT_ROOT/<repo>.git."""

    def test_the_json_mapping_wins(self, tmp_path: Path) -> None:
        env = {"SDLCFLOW_GIT_REMOTES": json.dumps({REPO: "/srv/x.git"}), "SDLCFLOW_GIT_ROOT": "/r"}
        assert remote_for(REPO, env) == Path("/srv/x.git")

    def test_the_root_directory_names_repo_dot_git(self, tmp_path: Path) -> None:
        (tmp_path / "acme" / "login.git").mkdir(parents=True)
        assert remote_for(REPO, {"SDLCFLOW_GIT_ROOT": str(tmp_path)}) == (
            tmp_path / "acme" / "login.git"
        )

    def test_an_unconfigured_repo_is_a_non_retryable_error_naming_the_fix(self) -> None:
        with pytest.raises(BindingConfigError, match="SDLCFLOW_GIT_REMOTES") as caught:
            remote_for(REPO, {})
        assert caught.value.retryable is False

    def test_a_repo_name_cannot_escape_the_root(self, tmp_path: Path) -> None:
        with pytest.raises(BindingConfigError, match="cannot name a path"):
            remote_for("../etc", {"SDLCFLOW_GIT_ROOT": str(tmp_path)})


class TestCheckBindings:
    """lint and test check the leased head; findings and failures are non-retryable verdicts."""

    def test_lint_of_a_clean_head_succeeds_with_its_report(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        head = _feature(sample)
        outcome = _run(lint_agent, _contract("lint", head, sample.main))
        assert isinstance(outcome, Succeeded)
        (report,) = outcome.result.artifacts
        assert report.name == "lint-report"
        assert json.loads(_store(tmp_path).get(report.sha))["sha"] == head

    def test_lint_findings_fail_the_task_without_retry(self, sample: SampleRepo) -> None:
        head = sample.commit(sample.main, "sloppy", {"service/sloppy.py": b"import os\n"})
        outcome = _run(lint_agent, _contract("lint", head, sample.main))
        assert isinstance(outcome, Failed) and not outcome.retryable
        assert "1 problem" in outcome.error

    def test_a_passing_suite_is_recorded_for_the_policy_step(self, sample: SampleRepo) -> None:
        head = _feature(sample)
        outcome = _run(suite_agent, _contract("test", head, sample.main))
        assert isinstance(outcome, Succeeded)
        assert [a.name for a in outcome.result.artifacts] == ["junit"]
        (recorded,) = check_results(REPO, head)
        assert (recorded["status"], recorded["sha"], recorded["junit"]) == (
            "passed",
            head,
            outcome.result.artifacts[0].sha,
        )

    def test_a_failing_suite_fails_without_retry_and_is_recorded(self, sample: SampleRepo) -> None:
        head = sample.commit(sample.main, "broken", {"tests/test_broken.py": _FAILING_TEST})
        outcome = _run(suite_agent, _contract("test", head, sample.main))
        assert isinstance(outcome, Failed) and not outcome.retryable
        assert [r["status"] for r in check_results(REPO, head)] == ["failed"]

    def test_a_lost_lease_publishes_nothing(self, sample: SampleRepo) -> None:
        env = AgentEnvironment(repo=REPO)
        env.lose_lease("revoked")
        outcome = _run(lint_agent, _contract("lint", _feature(sample), sample.main), env)
        assert isinstance(outcome, Lost)


class TestMergeBinding:
    """merge lands the verified head only while main is still at the verified base."""

    def _merge(self, head: str, base: str) -> TaskContract:
        return _contract("merge", head, base, outputs=Outputs(paths=("service/extra.py",)))

    def test_merge_fast_forwards_main_to_the_verified_head(self, sample: SampleRepo) -> None:
        head = _feature(sample)
        outcome = _run(merge_agent, self._merge(head, sample.main))
        assert isinstance(outcome, Succeeded)
        assert branch_head(sample.remote, "main") == head
        assert outcome.result.touched.paths == ("service/extra.py",)

    def test_merging_again_finds_it_done(self, sample: SampleRepo) -> None:
        head = _feature(sample)
        first = _run(merge_agent, self._merge(head, sample.main))
        second = _run(merge_agent, self._merge(head, sample.main))
        assert isinstance(first, Succeeded) and isinstance(second, Succeeded)
        assert first.result.artifacts == second.result.artifacts
        assert branch_head(sample.remote, "main") == head

    def test_a_target_that_moved_is_refused_and_left_alone(self, sample: SampleRepo) -> None:
        head = _feature(sample)
        moved = sample.commit(sample.main, "main", {"NOTES.md": b"moved\n"}, expected=sample.main)
        outcome = _run(merge_agent, self._merge(head, sample.main))
        assert isinstance(outcome, Failed) and not outcome.retryable
        assert "not the verified" in outcome.error
        assert branch_head(sample.remote, "main") == moved


class TestDeployBindings:
    """deploy and promote release the head to the declared environments, and undo on lease loss."""

    def _deploy(self, head: str, base: str, *envs: str) -> TaskContract:
        return _contract(
            "deploy", head, base, outputs=Outputs(environments=envs), compensation="rollback"
        )

    def test_staging_goes_live_and_the_artifact_is_verified(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        head = _feature(sample)
        outcome = _run(deploy_agent, self._deploy(head, sample.main, "staging"))
        assert isinstance(outcome, Succeeded)
        verified = outcome.result.verified
        assert verified is not None and (verified.head_sha, verified.base_sha) == (
            head,
            sample.main,
        )
        current = Releases(_store(tmp_path)).current("staging")
        assert current is not None and current.source_sha == head
        assert current.artifact == verified.artifact_digest

    def test_deploying_again_changes_nothing(self, sample: SampleRepo, tmp_path: Path) -> None:
        head = _feature(sample)
        first = _run(deploy_agent, self._deploy(head, sample.main, "staging"))
        second = _run(deploy_agent, self._deploy(head, sample.main, "staging"))
        assert isinstance(first, Succeeded) and isinstance(second, Succeeded)
        assert first.result == second.result
        assert len(Releases(_store(tmp_path)).history("staging")) == 1

    def test_promote_releases_to_every_declared_environment(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        head = _feature(sample)
        outcome = _run(promote_agent, self._deploy(head, sample.main, "staging", "prod"))
        assert isinstance(outcome, Succeeded)
        releases = Releases(_store(tmp_path))
        assert {releases.current(e).source_sha for e in ("staging", "prod")} == {head}  # type: ignore[union-attr]

    def test_a_failing_smoke_check_fails_and_keeps_the_previous_release(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        assert isinstance(
            _run(deploy_agent, self._deploy(sample.main, sample.main, "staging")), Succeeded
        )
        workspace = Workspace.at(tmp_path / "bump")
        bumped = update_dependency(
            DependencyUpdateInput(sample.remote, sample.main, "deps/pyjwt", "pyjwt", "3.0.0"),
            workspace,
        ).head
        outcome = _run(deploy_agent, self._deploy(bumped, sample.main, "staging"))
        assert isinstance(outcome, Failed) and not outcome.retryable
        assert Releases(_store(tmp_path)).current("staging").source_sha == sample.main  # type: ignore[union-attr]

    def test_an_undeclared_environment_is_a_non_retryable_failure(self, sample: SampleRepo) -> None:
        outcome = _run(deploy_agent, self._deploy(_feature(sample), sample.main))
        assert isinstance(outcome, Failed) and not outcome.retryable
        assert "declares no environments" in outcome.error

    def test_losing_the_lease_rolls_back_the_release_this_lease_made(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        assert isinstance(
            _run(deploy_agent, self._deploy(sample.main, sample.main, "staging")), Succeeded
        )
        head = _feature(sample)
        env = AgentEnvironment(repo=REPO)
        assert isinstance(
            _run(deploy_agent, self._deploy(head, sample.main, "staging"), env), Succeeded
        )
        assert env.context is not None
        lost = asyncio.run(compensate(definition_of(deploy_agent), env.context, "revoked"))
        assert lost.compensated
        current = Releases(_store(tmp_path)).current("staging")
        assert current is not None and current.action is ReleaseAction.ROLLED_BACK
        assert current.source_sha == sample.main


class TestPolicyBinding:
    """policy evaluates the shipped bundle on the change at the leased SHAs, with evidence."""

    def test_a_tested_change_passes_with_the_bundle_revision_and_evidence(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        head = _feature(sample)
        assert isinstance(_run(suite_agent, _contract("test", head, sample.main)), Succeeded)
        outcome = _run(policy_agent, _contract("policy", head, sample.main))
        assert isinstance(outcome, Succeeded)
        policy = outcome.result.policy
        assert policy is not None and policy.decision is PolicyDecision.PASS and policy.enforced
        shipped = PolicyBundle.load(Path(__file__).resolve().parents[3] / "sdlcflow" / "policies")
        assert policy.policy_revision == shipped.digest
        assert outcome.result.verified is not None
        assert outcome.result.verified.policy_revision == shipped.digest
        bundle = EvidenceStore.at(tmp_path / "data" / "artifacts").get(policy.evidence_digest)
        assert (bundle.state.head_sha, bundle.state.base_sha) == (head, sample.main)
        assert "service/extra.py" in bundle.diff and head in bundle.replay_command

    def test_an_untested_head_fails_the_tests_on_head_policy(self, sample: SampleRepo) -> None:
        outcome = _run(policy_agent, _contract("policy", _feature(sample), sample.main))
        assert isinstance(outcome, Succeeded) and outcome.result.policy is not None
        assert outcome.result.policy.decision is PolicyDecision.FAIL
        assert any("tests_on_head" in reason for reason in outcome.result.policy.reasons)

    def test_an_auth_library_bump_asks_for_review(self, sample: SampleRepo, tmp_path: Path) -> None:
        workspace = Workspace.at(tmp_path / "bump")
        head = update_dependency(
            DependencyUpdateInput(sample.remote, sample.main, "deps/pyjwt", "pyjwt", "2.9.0"),
            workspace,
        ).head
        assert isinstance(_run(suite_agent, _contract("test", head, sample.main)), Succeeded)
        outcome = _run(policy_agent, _contract("policy", head, sample.main))
        assert isinstance(outcome, Succeeded) and outcome.result.policy is not None
        assert outcome.result.policy.decision is PolicyDecision.REVIEW

    def test_audit_mode_records_without_enforcing(
        self, sample: SampleRepo, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SDLCFLOW_POLICY_MODE", "audit")
        outcome = _run(policy_agent, _contract("policy", _feature(sample), sample.main))
        assert isinstance(outcome, Succeeded) and outcome.result.policy is not None
        assert outcome.result.policy.decision is PolicyDecision.PASS
        assert not outcome.result.policy.enforced

    def test_offered_modes_override_the_env_default_for_the_policies_they_name(
        self, sample: SampleRepo, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SDLCFLOW_POLICY_MODE", "audit")
        env = AgentEnvironment(repo=REPO, policy_modes={"tests_on_head": True})
        outcome = _run(policy_agent, _contract("policy", _feature(sample), sample.main), env)
        assert isinstance(outcome, Succeeded) and outcome.result.policy is not None
        assert outcome.result.policy.decision is PolicyDecision.FAIL
        assert outcome.result.policy.enforced
        evaluated = json.loads(outcome.result.policy.evaluation)["decision"]["policies"]
        modes = {p["policy"]: p["mode"] for p in evaluated}
        assert modes["tests_on_head"] == "enforce"
        assert {mode for name, mode in modes.items() if name != "tests_on_head"} == {"audit"}

    def test_an_offered_audit_for_every_policy_overrides_an_enforcing_env(
        self, sample: SampleRepo, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("SDLCFLOW_POLICY_MODE", raising=False)
        env = AgentEnvironment(repo=REPO, policy_modes={"*": False})
        outcome = _run(policy_agent, _contract("policy", _feature(sample), sample.main), env)
        assert isinstance(outcome, Succeeded) and outcome.result.policy is not None
        assert outcome.result.policy.decision is PolicyDecision.PASS
        assert not outcome.result.policy.enforced


_LABEL_POLICY = """package sdlcflow.policies.change_facts

import rego.v1

review contains {
\t"rule": "major_dependency_bump",
\t"msg": sprintf("%s change labelled %v", [input.change_kind, input.labels]),
\t"paths": ["input.change_kind", "input.labels"],
} if {
\tinput.change_kind == "dependency"
\t"major" in input.labels
}
"""


class TestPolicyChangeFacts:
    """The change's kind and labels, as the offer carries them, reach the Rego input."""

    def test_kind_and_labels_are_in_the_policy_input(self) -> None:
        found = PolicyInputs("b" * 40, "h" * 40, (), (), (), (), (), (), None, "")
        facts = ChangeFacts("dependency-update", (), ("major", "auth"), (), ())
        document = policy_input(REPO, "c-1", "", found, (), facts)
        assert document.change_kind is ChangeKind.DEPENDENCY
        assert document.labels == ("major", "auth")
        assert document.extra == {"declared_kind": "dependency-update"}

    def test_unknown_kinds_read_as_code_and_keep_the_declared_kind(self) -> None:
        assert change_kind("Refactor") is ChangeKind.REFACTOR
        assert change_kind("yak-shave") is ChangeKind.CODE

    def test_a_rule_on_labels_decides_through_the_policy_agent(
        self, sample: SampleRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bundle = tmp_path / "bundle"
        shutil.copytree(Path(__file__).resolve().parents[3] / "sdlcflow" / "policies", bundle)
        (bundle / "change_facts.rego").write_text(_LABEL_POLICY)
        monkeypatch.setenv("SDLCFLOW_POLICY_BUNDLE", str(bundle))
        head = _feature(sample)
        assert isinstance(_run(suite_agent, _contract("test", head, sample.main)), Succeeded)
        decisions = {}
        for labels in ((), ("major",)):
            facts = ChangeFacts("dependency-update", (), labels, (), ())
            env = AgentEnvironment(repo=REPO, change=facts)
            outcome = _run(policy_agent, _contract("policy", head, sample.main), env)
            assert isinstance(outcome, Succeeded) and outcome.result.policy is not None
            decisions[labels] = outcome.result.policy
        assert decisions[()].decision is PolicyDecision.PASS
        assert decisions[("major",)].decision is PolicyDecision.REVIEW
        assert any("dependency change labelled" in r for r in decisions[("major",)].reasons)
