"""The demo's scenario, run as a test: the motivating incident over the real broker, Cassandra,
coordinator and reference agents, with each step's evidence asserted from the log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from sdlcflow.demo import IncidentRun, ScenarioOptions, run_incident
from sdlcflow.demo import stage as demo_stage
from sdlcflow.demo.narration import RecordingNarrator

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

STEPS = (
    "Set up",
    "Two agents change the login service at once",
    "sdlcflow detects the conflict and serialises the changes",
    "A deploy that fails its smoke check rolls back",
    "Policy blocks the half-done rename",
    "Only a fixed, human-approved change reaches prod",
    "The later change is re-verified on top of the earlier",
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

    def test_failed_smoke_check_leaves_staging_and_prod_on_main(
        self, finished: IncidentRun
    ) -> None:
        found = evidence(finished, STEPS[3])
        assert (
            "rejected" in found["staging release record"]
            or "rolled_back" in found["staging release record"]
        )
        assert found["prod"].startswith("still release")
        assert "ChangeFailed" in finished.decisions[finished.changes["bump"]]

    def test_half_done_rename_is_blocked_by_policy(self, finished: IncidentRun) -> None:
        rename = finished.decisions[finished.changes["rename"]]
        assert "ChangeBlocked" in rename and "ChangePromoted" not in rename
        found = evidence(finished, STEPS[4])
        assert found["policy"].startswith("FAIL") and "AUTH_SECRET" in found["policy"]

    def test_fix_is_promoted_only_after_two_signatures(self, finished: IncidentRun) -> None:
        fix = finished.decisions[finished.changes["fix"]]
        assert fix.count("ApprovalAccepted") == 2
        assert fix.index("ApprovalAccepted") < fix.index("ChangePromoted")
        found = evidence(finished, STEPS[5])
        assert found["policy"].startswith("REVIEW")
        # the auto-promote deploy agent asked for the prod lease before the signatures
        assert found["denied"].split(":")[0] in ("NOT_OFFERED", "GATE_NOT_SATISFIED")
        assert finished.shas["fix"] in found["promoted state"]

    def test_later_change_is_reverified_on_the_fix_then_promoted(
        self, finished: IncidentRun
    ) -> None:
        complete = finished.decisions[finished.changes["complete"]]
        assert "ConflictDetected" in complete and "ChangeRevised" in complete
        assert complete.index("ChangeRevised") < complete.index("ChangePromoted")
        found = evidence(finished, STEPS[6])
        assert found["re-verifying"].endswith(finished.shas["fix"])

    def test_audit_store_holds_every_decision_of_the_incident(self, finished: IncidentRun) -> None:
        logged = sum(len(types) for types in finished.decisions.values())
        # the step itself waited until every event logged for each change was in Cassandra
        assert 0 < finished.audit_rows <= logged


def processes_mentioning(text: str) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in listing.stdout.splitlines() if text in line]


class TestIncidentDemoWithoutAgents:
    """A missing piece stops the run at the step that needs it, by name, and stops every child."""

    def test_missing_test_agent_fails_the_conflict_step_loudly(
        self,
        kafka_bootstrap: str,
        admin: AdminClient,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(demo_stage, "reference_agents", dict)
        narrator = RecordingNarrator()
        options = ScenarioOptions(
            bootstrap=kafka_bootstrap, wait_s=120.0, workdir=tmp_path, keep=True
        )

        run = run_incident(options, narrator)

        assert not run.ok
        assert "needs agents for test" in run.problem
        assert "REFERENCE_AGENTS has no agent for 'test'" in run.problem
        assert [s.ok for s in run.steps] == [True, True, False]
        assert ("failed", run.problem) in narrator.lines
        assert "ConflictDetected" in run.decisions[run.changes["rename"]]
        assert processes_mentioning(run.root) == []
        leftovers = [t for t in admin.list_topics(timeout=10).topics if run.run_id in t]
        assert leftovers == []  # the run's coordinator changelogs were deleted
