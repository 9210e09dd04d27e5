"""The security-scan and dependency-update bindings on real git repositories."""

import hashlib
import json
from pathlib import Path

import pytest

from sdlcflow.agents import (
    AgentEnvironment,
    ArtifactRef,
    Failed,
    Outputs,
    Succeeded,
    TaskContract,
    task_contract,
)
from sdlcflow.agents.bindings import dependency_update_agent, security_scan_agent
from sdlcflow.agents.reference import Advisory
from sdlcflow.agents.reference.scan import affected
from sdlcflow.artifacts import ArtifactStore
from sdlcflow.core.events import ChangeFacts
from sdlcflow.gitops import branch_head, read_blob
from sdlcflow.gitops.sample import SampleRepo

REPO = "acme/login"
AWS_KEY = "AKIA" + "Q" * 16
PEM = "-----BEGIN RSA PRIVATE KEY-----"


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SampleRepo:
    repo = SampleRepo.create(tmp_path / "git")
    monkeypatch.setenv("SDLCFLOW_GIT_REMOTES", json.dumps({REPO: str(repo.remote)}))
    monkeypatch.setenv("SDLCFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SDLCFLOW_GIT_ROOT", raising=False)
    monkeypatch.delenv("SDLCFLOW_SCAN_LOCKFILES", raising=False)
    return repo


def _store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "data" / "artifacts")


def _contract(capability: str, head: str, base: str) -> TaskContract:
    return task_contract(capability, head=head, base=base)


def _run(fn: object, contract: TaskContract, labels: tuple[str, ...] = ()) -> object:
    facts = ChangeFacts("dependency-update", ("requirements.lock",), labels, (), ())
    return AgentEnvironment(repo=REPO, change=facts).run(fn, contract)  # type: ignore[arg-type]


def _report(tmp_path: Path, digest: str) -> dict[str, object]:
    return json.loads(_store(tmp_path).get(digest))  # type: ignore[no-any-return]


class TestSecurityScanBinding:
    """The scan reads the leased head's tree; findings fail the task, naming the report."""

    def test_the_sample_service_is_clean_and_the_report_is_the_artifact(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        outcome = _run(security_scan_agent, _contract("security-scan", sample.main, sample.main))
        assert isinstance(outcome, Succeeded)
        (artifact,) = outcome.result.artifacts
        assert artifact.name == "security-report"
        report = _report(tmp_path, artifact.sha)
        assert report["sha"] == sample.main and report["findings"] == []
        assert isinstance(report["files_scanned"], int) and report["files_scanned"] > 5

    def test_committed_credentials_and_a_vulnerable_pin_are_found_and_never_copied(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        lock = read_blob(sample.remote, sample.main, "requirements.lock") or b""
        head = sample.commit(
            sample.main,
            "leaky",
            {
                "deploy/aws.env": f"AWS_ACCESS_KEY_ID={AWS_KEY}\n".encode(),
                "keys/deploy.pem": f"{PEM}\nMIIE...\n".encode(),
                "requirements.lock": lock.replace(b"pyjwt==2.8.0", b"pyjwt==2.3.0"),
            },
        )
        outcome = _run(security_scan_agent, _contract("security-scan", head, sample.main))
        assert isinstance(outcome, Failed) and not outcome.retryable
        digest = outcome.error.rsplit("report ", 1)[1]
        raw = _store(tmp_path).get(digest)
        assert AWS_KEY.encode() not in raw
        found = {(f["rule"], f["path"]) for f in json.loads(raw)["findings"]}
        assert found == {
            ("aws-access-key-id", "deploy/aws.env"),
            ("private-key", "keys/deploy.pem"),
            ("CVE-2022-29217", "requirements.lock"),
        }

    def test_an_allow_mark_suppresses_a_reviewed_line(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        line = f"EXAMPLE_KEY={AWS_KEY}  # sdlcflow-scan: allow (documented fake)\n"
        head = sample.commit(sample.main, "doc", {"docs/example.env": line.encode()})
        outcome = _run(security_scan_agent, _contract("security-scan", head, sample.main))
        assert isinstance(outcome, Succeeded)

    def test_the_same_tree_gives_the_same_report(self, sample: SampleRepo) -> None:
        contract = _contract("security-scan", sample.main, sample.main)
        first, second = _run(security_scan_agent, contract), _run(security_scan_agent, contract)
        assert isinstance(first, Succeeded) and isinstance(second, Succeeded)
        assert first.result.artifacts == second.result.artifacts


class TestAdvisoryRanges:
    """A pin is affected when introduced <= version < fixed, by release numbers."""

    @pytest.mark.parametrize(
        ("version", "hit"),
        [("1.4.9", False), ("1.5.0", True), ("2.3.0", True), ("2.4", False), ("2.10.0", False)],
    )
    def test_range_bounds(self, version: str, hit: bool) -> None:
        advisory = Advisory("CVE-X", "pyjwt", "1.5.0", "2.4.0", "")
        assert affected(version, advisory) is hit


class TestDependencyUpdateBinding:
    """The change's upgrade label is pinned on deps/<package>-<version> from the leased head."""

    def test_the_pin_moves_on_a_branch_with_the_new_head_and_lockfile_digest(
        self, sample: SampleRepo, tmp_path: Path
    ) -> None:
        contract = _contract("dependency-update", sample.main, sample.main)
        outcome = _run(dependency_update_agent, contract, ("upgrade:pyjwt==2.9.0",))
        assert isinstance(outcome, Succeeded)
        head = branch_head(sample.remote, "deps/pyjwt-2.9.0")
        assert head is not None and head != sample.main
        lock = read_blob(sample.remote, head, "requirements.lock") or b""
        assert b"pyjwt==2.9.0" in lock
        assert b"pyjwt==2.9.0" in (read_blob(sample.remote, head, "requirements.txt") or b"")
        assert outcome.result.artifacts == (
            ArtifactRef("head", head),
            ArtifactRef("lockfile", "sha256:" + hashlib.sha256(lock).hexdigest()),
        )
        assert outcome.result.touched == Outputs(paths=("requirements.lock", "requirements.txt"))

    def test_running_it_again_gives_the_same_outputs(self, sample: SampleRepo) -> None:
        contract = _contract("dependency-update", sample.main, sample.main)
        first = _run(dependency_update_agent, contract, ("upgrade:pyjwt==2.9.0",))
        second = _run(dependency_update_agent, contract, ("upgrade:pyjwt==2.9.0",))
        assert isinstance(first, Succeeded) and isinstance(second, Succeeded)
        assert first.result == second.result

    def test_a_change_without_an_upgrade_label_fails_naming_the_label(
        self, sample: SampleRepo
    ) -> None:
        contract = _contract("dependency-update", sample.main, sample.main)
        outcome = _run(dependency_update_agent, contract, ("major",))
        assert isinstance(outcome, Failed) and not outcome.retryable
        assert "upgrade:<package>==<version>" in outcome.error
