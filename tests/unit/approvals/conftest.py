"""Fixtures for approvals tests: a real sample git remote and a stored evidence bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdlcflow.approvals.evidence import EvidenceRequest, EvidenceStore, assemble_evidence
from sdlcflow.core.events import VerifiedState
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.identity import EvidenceBundle, KeyPair, generate_key_pair

REPO = "acme/login"
CHANGE = "chg-1"


@pytest.fixture
def sample(tmp_path: Path) -> SampleRepo:
    return SampleRepo.create(tmp_path / "git")


@pytest.fixture
def head(sample: SampleRepo) -> str:
    return sample.commit(
        sample.main,
        "feature",
        {
            "requirements.txt": b"pyjwt==3.0.0\n",
            "service/evil.py": b"print('<script>x</script>')\n",
        },
    )


@pytest.fixture
def bundle(sample: SampleRepo, head: str) -> EvidenceBundle:
    return assemble_evidence(
        EvidenceRequest(
            repo=REPO,
            change_id=CHANGE,
            remote=sample.remote,
            base=sample.main,
            head=head,
            lockfile_digest="sha256:" + "1" * 64,
            test_results=({"name": "pytest", "outcome": "passed", "passed": 5, "failed": 0},),
            policy_decision={"decision": "REVIEW", "reasons": ["pyjwt 2 -> 3 is a major bump"]},
            policy_bundle_digest="sha256:" + "2" * 64,
            risk_score=72,
            environ={"AUTH_SECRET": "hunter2-value", "PATH": "/usr/bin"},
        )
    )


@pytest.fixture
def evidence(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore.at(tmp_path / "artifacts")


@pytest.fixture
def stored(evidence: EvidenceStore, bundle: EvidenceBundle) -> str:
    return evidence.put(bundle)


@pytest.fixture
def state(bundle: EvidenceBundle) -> VerifiedState:
    return VerifiedState(
        head_sha=bundle.state.head_sha,
        base_sha=bundle.state.base_sha,
        lockfile_digest=bundle.state.lockfile_digest,
    )


@pytest.fixture(scope="session")
def issuer() -> KeyPair:
    return generate_key_pair("ops-test")
