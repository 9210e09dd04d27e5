"""Approvals through a real `sdlcflow run processors` worker: the policy says REVIEW, a reviewer
signs with `sdlcflow approve`, and the promote task is granted; a forged or expired approval is
refused and the change stays waiting.

The worker runs as a subprocess with its own app id, data dir and repository prefix; scripted
agents answer offers; the reviewer's read model starts at the current end of the decisions log
so it reads only this test's decisions. Every wait is on a decision arriving, with a timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sdlcflow.approvals.decisions import Reviewer, decision_event
from sdlcflow.approvals.evidence import EvidenceRequest, EvidenceStore, assemble_evidence
from sdlcflow.approvals.store import ApprovalStore
from sdlcflow.approvals.testing import ReviewerFiles, issue_reviewer
from sdlcflow.cli import cli
from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.demo.services import Services
from sdlcflow.demo.watch import LogWatch, Match, end_offsets, start_group_at_end
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.infra.topics import forgotten_at_exit
from sdlcflow.processors.engine import INPUT_TOPICS
from sdlcflow.processors.testing import SignedActor, TestIssuer, change_request
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS, COORDINATOR

pytestmark = pytest.mark.integration

WAIT_S = 60.0
CAPABILITIES = ("lint", "test", "policy", "merge", "promote")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Worker:
    """One `sdlcflow run processors` subprocess for repositories `<prefix>*`."""

    bootstrap: str
    prefix: str
    services: Services
    issuer: TestIssuer
    root: Path


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    root = tmp_path_factory.mktemp("approvals-worker")
    issuer = TestIssuer.new()
    trust = issuer.write_trust_file(root / "trusted-issuers.json")
    tag = uuid.uuid4().hex[:8]
    with forgotten_at_exit(kafka_bootstrap) as footprint, Services(root / "logs", {}) as services:
        app_id = footprint.app(f"test-approvals-{tag}")
        start_group_at_end(kafka_bootstrap, app_id, INPUT_TOPICS)
        services.start_cli(
            app_id,
            [
                "run", "processors", "--app-id", app_id, "--data-dir", str(root / app_id),
                "--store", "rocksdb", "--trusted-issuers", str(trust),
                "--tick-interval-ms", "200", "--lease-ttl-ms", "30000",
                "--repos", f"approvals-{tag}/*",
            ],
            {"SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap},
        )  # fmt: skip
        yield Worker(kafka_bootstrap, f"approvals-{tag}/", services, issuer, root)


def of(change_id: str, *types: type, step: str | None = None) -> Match:
    def match(event: Event) -> bool:
        envelope = event.envelope
        if envelope.change_id != change_id or not isinstance(event.payload, types):
            return False
        return step is None or envelope.task_id == f"{change_id}/{step}"

    return match


@dataclass
class Stage:
    """A change of one fresh repository whose policy says REVIEW, with stored evidence."""

    worker: Worker
    repo: str
    change_id: str
    evidence_digest: str
    env: dict[str, str]
    watch: LogWatch
    publisher: EventPublisher
    agent: SignedActor
    answered: set[str] = field(default_factory=set)

    def send(self, payload: ev.Payload, task_id: str | None, change_id: str | None = None) -> Event:
        """Publish as the scripted agent, for this stage's change unless another is named."""
        event = self.agent.event(
            payload, repo=self.repo, at=now_ms(), change_id=change_id or self.change_id,
            task_id=task_id,
        )  # fmt: skip
        self.publisher.publish(AGENT_EVENTS, event)
        self.publisher.flush()
        return event

    def answer(self) -> None:
        """Lease every offer and succeed every grant of the repository's changes, each for its
        own change (an earlier change of the repository may still be finishing); the policy
        step reports REVIEW."""
        for event in self.watch.events():
            if event.event_id in self.answered:
                continue
            self.answered.add(event.event_id)
            payload, envelope = event.payload, event.envelope
            if isinstance(payload, ev.TaskOffered) and payload.contract.capability != "promote":
                self.send(ev.LeaseRequested(payload.contract.capability), envelope.task_id,
                          envelope.change_id)  # fmt: skip
            elif isinstance(payload, ev.LeaseGranted) and payload.holder == self.agent.actor.id:
                self.send(self.result(event, payload), envelope.task_id, envelope.change_id)

    def result(self, granted: Event, grant: ev.LeaseGranted) -> ev.TaskSucceeded:
        """The grant's change's plan precedes its grant in the repository's partition."""
        change_id = granted.envelope.change_id or self.change_id
        planned = self.watch.events(of(change_id, ev.ChangePlanned))[0].payload
        assert isinstance(planned, ev.ChangePlanned)
        state = planned.state
        step = (granted.envelope.task_id or "").rsplit("/", 1)[-1]
        policy = None
        if step == "policy":
            policy = ev.PolicyOutcome(
                ev.PolicyDecision.REVIEW, True, "bundle-1", self.evidence_digest, ("p: look",)
            )
        verified = ev.VerifiedState(state.head_sha, state.base_sha, state.lockfile_digest)
        return ev.TaskSucceeded(grant.lease_id, grant.epoch, grant.inputs, ev.Outputs(), (),
                                verified, policy)  # fmt: skip

    def wait(self, expecting: str, match: Match) -> Event:
        """Answer offers and grants until `match` is seen on sdlc.coordinator."""
        deadline = time.monotonic() + WAIT_S
        while True:
            self.answer()
            found = self.watch.wait_for(
                expecting,
                lambda e: match(e) or e.event_id not in self.answered,
                timeout_s=max(deadline - time.monotonic(), 0.1),
                hint="read the worker's log under the module's tmp dir (logs/)",
                health=self.worker.services.check,
            )
            if match(found):
                return found

    def approve(self, who: ReviewerFiles) -> Result:
        return CliRunner().invoke(
            cli,
            ["approve", f"{self.change_id}/approval", "--key", str(who.key_file),
             "--credential", str(who.credential_file), "--wait", "30", "--json"],
            env=self.env, catch_exceptions=False,
        )  # fmt: skip


@pytest.fixture
def stage(worker: Worker, tmp_path: Path) -> Iterator[Stage]:
    repo = f"{worker.prefix}{uuid.uuid4().hex[:8]}"
    sample = SampleRepo.create(tmp_path / "git")
    head = sample.commit(sample.main, "bump", {"requirements.txt": b"pyjwt==3.0.0\n"})
    change_id = str(uuid.uuid4())
    bundle = assemble_evidence(
        EvidenceRequest(
            repo=repo,
            change_id=change_id,
            remote=sample.remote,
            base=sample.main,
            head=head,
            lockfile_digest="sha256:lock",
            policy_decision={"decision": "REVIEW", "reasons": ["p: look"]},
            risk_score=60,
        )
    )
    digest = EvidenceStore.at(tmp_path / "evidence").put(bundle)
    # the reviewer's read model starts where this test starts: only its own decisions
    store = ApprovalStore(tmp_path / "approvals.sqlite")
    for position in end_offsets(worker.bootstrap, (COORDINATOR,)):
        if position.offset > 0:
            store.skip(COORDINATOR, position.partition, position.offset - 1)
    env = {
        "SDLCFLOW_KAFKA_BOOTSTRAP": worker.bootstrap,
        "SDLCFLOW_APPROVALS_DB": str(tmp_path / "approvals.sqlite"),
        "SDLCFLOW_EVIDENCE_DIR": str(tmp_path / "evidence"),
    }
    agent = worker.issuer.actor(
        "scripted-agent", capabilities=CAPABILITIES, repos=(f"{worker.prefix}*",),
        issued_at=now_ms() - 1_000,
    )  # fmt: skip
    with (
        LogWatch(worker.bootstrap, repo, topics=(COORDINATOR,)) as watch,
        EventPublisher(worker.bootstrap) as publisher,
    ):
        request = change_request(
            repo, at=now_ms(), change_id=change_id, head_sha=head, base_sha=sample.main
        )
        publisher.publish(CHANGE_REQUESTS, request)
        publisher.flush()
        yield Stage(worker, repo, change_id, digest, env, watch, publisher, agent)


class TestApprovalThroughTheWorker:
    """A signed approval from the CLI lets the faust worker grant the promote task."""

    def test_cli_approval_is_accepted_and_the_promote_task_is_granted(
        self, stage: Stage, worker: Worker, tmp_path: Path
    ) -> None:
        requested = stage.wait("the approval request", of(stage.change_id, ev.ApprovalRequested))
        assert isinstance(requested.payload, ev.ApprovalRequested)
        assert requested.payload.evidence_digest == stage.evidence_digest
        alice = issue_reviewer(tmp_path / "keys", "alice", worker.issuer.key)
        result = stage.approve(alice)
        assert result.exit_code == 0, result.output
        assert '"accepted": true' in result.output
        offer = stage.wait("the promote offer", of(stage.change_id, ev.TaskOffered, step="promote"))
        stage.send(ev.LeaseRequested("promote"), offer.envelope.task_id)
        granted = stage.wait(
            "the promote grant",
            of(stage.change_id, ev.LeaseGranted, ev.LeaseDenied, step="promote"),
        )
        assert isinstance(granted.payload, ev.LeaseGranted), granted.payload
        accepted = stage.watch.events(of(stage.change_id, ev.ApprovalAccepted))
        assert [e.payload.approver for e in accepted] == ["alice"]  # type: ignore[union-attr]


class TestRefusedApprovals:
    """Approvals the worker must not count leave the change waiting for a real one."""

    def test_forged_and_expired_approvals_are_rejected_and_nothing_is_granted(
        self, stage: Stage, worker: Worker, tmp_path: Path
    ) -> None:
        stage.wait("the approval request", of(stage.change_id, ev.ApprovalRequested))
        forger = issue_reviewer(tmp_path / "forged", "mallory", TestIssuer.new().key)
        forged = stage.approve(forger)
        assert forged.exit_code == 2, forged.output
        assert '"accepted": false' in forged.output
        expired_files = issue_reviewer(
            tmp_path / "expired", "eve", worker.issuer.key,
            issued_at=now_ms() - 2 * 3_600_000, ttl_ms=3_600_000,
        )  # fmt: skip
        store = ApprovalStore(Path(stage.env["SDLCFLOW_APPROVALS_DB"]))
        approval = store.get(f"{stage.change_id}/approval")
        expired = decision_event(
            approval,
            Reviewer.load(expired_files.key_file, expired_files.token),
            approve=True,
            comment="signed with a credential that expired an hour ago",
            now_ms=now_ms(),
        )
        stage.publisher.publish(AGENT_EVENTS, expired)
        stage.publisher.flush()
        rejected = stage.wait(
            "the expired approval's rejection",
            lambda e: (
                isinstance(e.payload, ev.EventRejected)
                and e.payload.rejected_event_id == expired.event_id
            ),
        )
        assert isinstance(rejected.payload, ev.EventRejected)
        assert not stage.watch.events(of(stage.change_id, ev.ApprovalAccepted))
        assert not stage.watch.events(of(stage.change_id, ev.TaskOffered, step="promote"))
