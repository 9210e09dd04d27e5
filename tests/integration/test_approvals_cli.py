"""`sdlcflow approvals/approve/reject` against the real broker and the coordinator's engine."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sdlcflow.approvals.evidence import EvidenceRequest, EvidenceStore, assemble_evidence
from sdlcflow.approvals.testing import (
    CoreDriver,
    EngineLoop,
    ReviewerFiles,
    create_private_topics,
    issue_reviewer,
    publish_decisions,
)
from sdlcflow.cli import cli
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, VerifiedState
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.identity import KeyPair, generate_key_pair
from sdlcflow.infra.topics import BrokerFootprint

pytestmark = pytest.mark.integration
APPROVAL = "chg-1/approval"


@dataclass
class Stage:
    """One repository with a change awaiting approval, on private topics, and a reviewer."""

    env: dict[str, str]
    driver: CoreDriver
    issuer: KeyPair
    alice: ReviewerFiles
    keys_dir: Path
    bootstrap: str
    repo: str

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)

    def engine(self) -> EngineLoop:
        return EngineLoop(
            self.bootstrap,
            repo=self.repo,
            state=self.driver.state,
            trusted={self.issuer.key_id: self.issuer.public_key},
            inputs_topic=self.env["SDLCFLOW_AGENT_EVENTS_TOPIC"],
            decisions_topic=self.env["SDLCFLOW_COORDINATOR_TOPIC"],
        )

    def approve(self, who: ReviewerFiles, *extra: str) -> Result:
        return self.run(
            "approve", APPROVAL, "--key", str(who.key_file), "--credential",
            str(who.credential_file), "--wait", "20", *extra,
        )  # fmt: skip


@pytest.fixture
def stage(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    footprint: BrokerFootprint,
) -> Iterator[Stage]:
    prefix = unique_name("approvals")
    repo = f"acme/{prefix}"
    coordinator = footprint.topic(f"{prefix}.coordinator")
    agent_events = footprint.topic(f"{prefix}.agent-events")
    create_private_topics(kafka_bootstrap, coordinator, agent_events)
    sample = SampleRepo.create(tmp_path / "git")
    head = sample.commit(sample.main, "bump", {"requirements.txt": b"pyjwt==3.0.0\n"})
    bundle = assemble_evidence(
        EvidenceRequest(
            repo=repo,
            change_id="chg-1",
            remote=sample.remote,
            base=sample.main,
            head=head,
            lockfile_digest="l1",
            policy_decision={"decision": "REVIEW", "reasons": ["pyjwt major bump"]},
            risk_score=60,
        )
    )
    digest = EvidenceStore.at(tmp_path / "artifacts").put(bundle)
    driver = CoreDriver(repo)
    state = VerifiedState(bundle.state.head_sha, bundle.state.base_sha, "l1", "art", "pol-1")
    driver.to_approval("chg-1", state, digest)
    publish_decisions(kafka_bootstrap, coordinator, driver.log)
    issuer = generate_key_pair("ops-approvals-it")
    env = {
        "SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SDLCFLOW_APPROVALS_DB": str(tmp_path / "approvals.sqlite"),
        "SDLCFLOW_EVIDENCE_DIR": str(tmp_path / "artifacts"),
        "SDLCFLOW_COORDINATOR_TOPIC": coordinator,
        "SDLCFLOW_AGENT_EVENTS_TOPIC": agent_events,
    }
    alice = issue_reviewer(tmp_path / "keys", "alice", issuer)
    yield Stage(env, driver, issuer, alice, tmp_path / "keys", kafka_bootstrap, repo)


class TestListAndShow:
    """The read model is caught up from the coordinator's log before anything is shown."""

    def test_list_json_shows_the_pending_approval(self, stage: Stage) -> None:
        result = stage.run("approvals", "list", "--json")
        assert result.exit_code == 0, result.output
        (approval,) = json.loads(result.output)
        assert (approval["id"], approval["repo"], approval["status"]) == (
            APPROVAL,
            stage.repo,
            "pending",
        )

    def test_show_json_carries_the_evidence_bundle(self, stage: Stage) -> None:
        result = stage.run("approvals", "show", APPROVAL, "--json")
        assert result.exit_code == 0, result.output
        shown = json.loads(result.output)
        assert "+pyjwt==3.0.0" in shown["evidence"]["diff"]
        assert shown["evidence"]["risk_score"] == 60 and shown["evidence_error"] == ""

    def test_show_prints_the_evidence_for_people(self, stage: Stage) -> None:
        result = stage.run("approvals", "show", APPROVAL)
        assert result.exit_code == 0, result.output
        assert "+pyjwt==3.0.0" in result.output and "risk score 60/100" in result.output
        assert "replay: git clone" in result.output and "pyjwt major bump" in result.output

    def test_unknown_id_is_a_clear_error(self, stage: Stage) -> None:
        result = stage.run("approvals", "show", "nope/approval")
        assert result.exit_code == 1 and "sdlcflow approvals list" in result.output


class TestApprove:
    """approve signs, sends to the agent-events topic and reports the coordinator's verdict."""

    def test_approval_is_accepted_and_the_task_completes(self, stage: Stage) -> None:
        with stage.engine() as engine:
            result = stage.approve(stage.alice, "--comment", "checked the bump")
        assert result.exit_code == 0, result.output
        assert "accepted by the coordinator: alice approved (1 of 1)" in result.output
        assert engine.state.changes["chg-1"].tasks[APPROVAL].status.value == "SUCCEEDED"
        shown = json.loads(stage.run("approvals", "show", APPROVAL, "--json").output)
        assert shown["approval"]["status"] == "approved"
        assert shown["approval"]["approvers"] == ["alice"]

    def test_deciding_again_is_refused_as_already_decided(self, stage: Stage) -> None:
        with stage.engine():
            assert stage.approve(stage.alice).exit_code == 0
        bob = issue_reviewer(stage.keys_dir, "bob", stage.issuer)
        result = stage.approve(bob)
        assert result.exit_code == 1 and "already approved" in result.output

    def test_reject_blocks_the_change_with_the_reason(self, stage: Stage) -> None:
        with stage.engine():
            result = stage.run(
                "reject", APPROVAL, "--key", str(stage.alice.key_file), "--credential",
                stage.alice.token, "--reason", "no rollback plan", "--wait", "20",
            )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "approval rejected by alice: no rollback plan" in result.output
        status = json.loads(stage.run("approvals", "show", APPROVAL, "--json").output)
        assert status["approval"]["status"] == "rejected"


class TestCoordinatorRejections:
    """What only the coordinator can judge comes back as a rejection with its reason, exit 2."""

    def test_stale_evidence_after_the_head_moved(self, stage: Stage) -> None:
        stage.run("approvals", "list")  # the reviewer saw the approval for the old head
        moved = ev.ChangeUpdated(base_sha="b1", head_sha="f" * 40, lockfile_digest="l2")
        stage.driver._feed(moved, Actor(ActorKind.PRODUCER, "webhook"), "chg-1", None)
        with stage.engine():
            result = stage.approve(stage.alice)
        assert result.exit_code == 2, result.output
        assert "REJECTED by the coordinator (NOT_AWAITING_APPROVAL)" in result.output

    def test_reviewer_from_an_untrusted_issuer(self, stage: Stage) -> None:
        rogue = issue_reviewer(stage.keys_dir / "rogue", "mallory", generate_key_pair("rogue"))
        with stage.engine():
            result = stage.approve(rogue)
        assert result.exit_code == 2, result.output
        assert "MISSING_SCOPE" in result.output and "unknown_issuer" in result.output

    def test_author_cannot_approve_their_own_change(self, stage: Stage) -> None:
        author = issue_reviewer(stage.keys_dir / "author", "webhook", stage.issuer)
        with stage.engine():
            result = stage.approve(author)
        assert result.exit_code == 2, result.output
        assert "NOT_A_REVIEWER" in result.output and "authors cannot approve" in result.output


class TestBadInput:
    """Key and credential problems stop the command before anything is sent."""

    def test_bad_key_file(self, stage: Stage, tmp_path: Path) -> None:
        bad = tmp_path / "bad.key"
        bad.write_text("nope")
        bad.chmod(0o600)
        result = stage.run(
            "approve", APPROVAL, "--key", str(bad), "--credential", stage.alice.token
        )
        assert result.exit_code == 1 and "bad key file" in result.output

    def test_reject_needs_a_reason(self, stage: Stage) -> None:
        result = stage.run("reject", APPROVAL, "--key", str(stage.alice.key_file))
        assert result.exit_code == 2 and "--reason" in result.output
