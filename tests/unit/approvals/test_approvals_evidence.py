"""Evidence bundles: assembled from real git, names not values, stored and verified."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from sdlcflow.approvals.evidence import (
    EvidenceError,
    EvidenceStore,
    policy_summary,
    replay_command,
)
from sdlcflow.core.events import PolicyDecision as Outcome
from sdlcflow.gitops import diff, resolve
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.identity import EvidenceBundle, evidence_digest


class TestAssembleEvidence:
    """The bundle holds the exact diff, resolved SHAs, names of env vars and a replay command."""

    def test_diff_is_exactly_what_git_reports_between_the_shas(
        self, sample: SampleRepo, head: str, bundle: EvidenceBundle
    ) -> None:
        assert bundle.diff == diff(sample.remote, sample.main, head).text
        assert "+pyjwt==3.0.0" in bundle.diff
        assert bundle.state.head_sha == resolve(sample.remote, head)
        assert bundle.state.base_sha == sample.main

    def test_environment_lists_variable_names_and_never_their_values(
        self, bundle: EvidenceBundle
    ) -> None:
        text = json.dumps(bundle.model_dump(mode="json"))
        assert bundle.environment["env_var_names"] == ["AUTH_SECRET", "PATH"]
        assert "hunter2-value" not in text
        assert set(bundle.environment["tools"]) == {"git", "python3"}
        assert bundle.environment["tools"]["git"].startswith("git version")

    def test_changed_paths_come_from_git(self, bundle: EvidenceBundle) -> None:
        assert bundle.environment["changed_paths"] == ["requirements.txt", "service/evil.py"]

    def test_replay_command_checks_out_the_exact_head_and_runs_the_checks(
        self, sample: SampleRepo, bundle: EvidenceBundle
    ) -> None:
        words = shlex.split(bundle.replay_command.replace("&&", ";"))
        assert bundle.state.head_sha in words
        assert bundle.state.base_sha in words
        assert str(sample.remote) in words
        assert bundle.replay_command.endswith("ruff check . && python -m pytest -q")

    def test_replay_command_quotes_hostile_remote_paths(self) -> None:
        command = replay_command("/tmp/x; rm -rf ~", "b" * 40, "h" * 40, ("pytest",))
        assert "'/tmp/x; rm -rf ~'" in command


class TestEvidenceStore:
    """Bundles are stored content-addressed and checked against their digest on every read."""

    def test_stored_bundle_comes_back_under_its_evidence_digest(
        self, evidence: EvidenceStore, bundle: EvidenceBundle, stored: str
    ) -> None:
        assert stored == bundle.digest() == evidence_digest(bundle.model_dump(mode="json"))
        assert evidence.get(stored) == bundle
        assert evidence.exists(stored)

    def test_storing_twice_changes_nothing(
        self, evidence: EvidenceStore, bundle: EvidenceBundle, stored: str
    ) -> None:
        before = sorted(evidence.artifacts.digests())
        assert evidence.put(bundle) == stored
        assert sorted(evidence.artifacts.digests()) == before

    def test_unknown_digest_says_where_it_looked(self, evidence: EvidenceStore) -> None:
        with pytest.raises(EvidenceError, match="SDLCFLOW_EVIDENCE_DIR"):
            evidence.get("sha256:" + "0" * 64)

    def test_malformed_digest_is_refused(self, evidence: EvidenceStore) -> None:
        with pytest.raises(EvidenceError, match="not an evidence digest"):
            evidence.get("../../etc/passwd")
        assert not evidence.exists("../../etc/passwd")

    def test_index_pointing_at_other_evidence_is_reported_not_served(
        self, evidence: EvidenceStore, bundle: EvidenceBundle, stored: str, tmp_path: Path
    ) -> None:
        other = evidence.put(bundle.model_copy(update={"risk_score": 1}))
        index = evidence.artifacts.root / "evidence"
        target = (index / other.removeprefix("sha256:")).read_text()
        os.chmod(index / stored.removeprefix("sha256:"), 0o644)
        (index / stored.removeprefix("sha256:")).write_text(target)
        with pytest.raises(EvidenceError, match="refusing to show altered evidence"):
            evidence.get(stored)


class TestPolicySummary:
    """Policy evidence reads the same whether the policy step wrote a BundleDecision or a dict."""

    def test_bundle_decision_dump_gives_decision_findings_and_reasons(self) -> None:
        from sdlcflow.policy.decision import BundleDecision, Finding, FindingKind, PolicyResult
        from sdlcflow.policy.modes import Mode

        finding = Finding(
            kind=FindingKind.REVIEW,
            rule="sensitive_bump",
            message="pyjwt 2 -> 3 needs review",
            input_paths=("dependencies",),
        )
        result = PolicyResult(
            policy="sensitive_dependencies",
            mode=Mode.ENFORCE,
            outcome=Outcome.REVIEW,
            effective=Outcome.REVIEW,
            risk=60,
            required_approvals=1,
            findings=(finding,),
        )
        decision = BundleDecision(
            bundle_digest="sha256:" + "2" * 64,
            input_digest="sha256:" + "3" * 64,
            outcome=Outcome.REVIEW,
            enforced_outcome=Outcome.REVIEW,
            risk=60,
            required_approvals=1,
            policies=(result,),
        )
        summary = policy_summary(decision.model_dump(mode="json"))
        assert (summary.decision, summary.enforced_decision) == ("REVIEW", "REVIEW")
        assert summary.reasons == ("sensitive_dependencies: pyjwt 2 -> 3 needs review",)
        (only,) = summary.findings
        assert (only.policy, only.mode, only.rule, only.input_paths) == (
            "sensitive_dependencies",
            "enforce",
            "sensitive_bump",
            ("dependencies",),
        )

    def test_plain_mapping_keeps_its_reasons(self) -> None:
        summary = policy_summary({"decision": "REVIEW", "reasons": ["major bump"]})
        assert (summary.decision, summary.reasons, summary.findings) == (
            "REVIEW",
            ("major bump",),
            (),
        )

    def test_malformed_evidence_yields_an_empty_summary_not_an_error(self) -> None:
        summary = policy_summary({"policies": "oops", "outcome": None})
        assert (summary.decision, summary.findings, summary.reasons) == ("", (), ())
