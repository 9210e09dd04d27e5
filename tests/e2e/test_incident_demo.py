"""The demo's scenario, run as a test: the motivating incident over the real broker, Cassandra,
coordinator and reference agents, with each step's evidence asserted from the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdlcflow.demo import IncidentRun, ScenarioOptions, run_incident
from sdlcflow.demo.narration import RecordingNarrator

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

STEPS = (
    "Set up",
    "Two agents change the login service at once",
    "sdlcflow detects the conflict and serialises the changes",
    "A deploy that fails its smoke check rolls back",
    "Only a fixed, human-approved change reaches prod",
    "The rename is re-verified on top and blocked by policy",
    "The audit trail",
)


@pytest.fixture(scope="module")
def incident(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> IncidentRun:
    workdir: Path = tmp_path_factory.mktemp("demo")
    options = ScenarioOptions(bootstrap=kafka_bootstrap, wait_s=240.0, workdir=workdir)
    return run_incident(options, RecordingNarrator())


@pytest.fixture
def finished(incident: IncidentRun) -> IncidentRun:
    """The run, asserted complete first, so a stopped run fails every test with its reason."""
    assert incident.problem == "", incident.problem
    return incident


def evidence(run: IncidentRun, title: str) -> dict[str, str]:
    step = next(s for s in run.steps if s.title == title)
    return dict(step.evidence)


class TestIncidentDemo:
    """The motivating incident is prevented, and every step is proven by the log."""

    def test_every_narrated_step_happened(self, incident: IncidentRun) -> None:
        assert incident.problem == "", incident.problem
        assert [s.title for s in incident.steps] == list(STEPS)
        assert all(s.ok for s in incident.steps), [s.title for s in incident.steps if not s.ok]

    def test_the_two_changes_overlap_and_the_later_waits(self, finished: IncidentRun) -> None:
        rename = finished.decisions[finished.changes["rename"]]
        bump = finished.decisions[finished.changes["bump"]]
        assert "ConflictDetected" in rename
        assert "ResourceLeaseGranted" in bump
        overlaps = evidence(finished, STEPS[2])["overlaps"]
        assert "env:prod" in overlaps

    def test_each_change_alone_passes_its_tests(self, finished: IncidentRun) -> None:
        found = evidence(finished, STEPS[2])
        assert found["bump tests passed on"] == finished.shas["bump"]
        assert found["rename tests passed on"] == finished.shas["rename"]

    def test_failed_smoke_check_leaves_prod_on_the_previous_release(
        self, finished: IncidentRun
    ) -> None:
        found = evidence(finished, STEPS[3])
        assert "smoke FAILED" in found["smoke log"]
        assert found["prod"].startswith("still release")

    def test_only_the_fixed_change_signed_by_two_reviewers_is_promoted(
        self, finished: IncidentRun
    ) -> None:
        fix = finished.decisions[finished.changes["fix"]]
        assert fix.count("ApprovalAccepted") == 2
        assert "ChangePromoted" in fix
        assert fix.index("ApprovalAccepted") < fix.index("ChangePromoted")
        promoted = evidence(finished, STEPS[4])["promoted state"]
        assert finished.shas["fix"] in promoted

    def test_rename_is_reverified_on_the_fix_and_blocked(self, finished: IncidentRun) -> None:
        rename = finished.decisions[finished.changes["rename"]]
        assert "ChangeRevised" in rename and "ChangeBlocked" in rename
        assert "ChangePromoted" not in rename
        found = evidence(finished, STEPS[5])
        assert finished.shas["fix"] in found["re-verifying"]
        assert "AUTH_SECRET" in found["policy"]

    def test_audit_store_holds_every_decision_of_the_incident(self, finished: IncidentRun) -> None:
        logged = sum(len(finished.decisions[finished.changes[role]]) for role in ("bump", "rename"))
        # the step itself waited until every event logged for both changes was in Cassandra
        assert 0 < finished.audit_rows <= logged
