"""Console test world: a real read model, real evidence from git and an in-process coordinator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from sdlcflow.approvals.decisions import Reviewer
from sdlcflow.approvals.evidence import EvidenceRequest, EvidenceStore, assemble_evidence
from sdlcflow.approvals.service import ApprovalsService
from sdlcflow.approvals.store import ApprovalStore
from sdlcflow.approvals.sync import SyncReport
from sdlcflow.approvals.testing import CoreDriver, ReviewerFiles, issue_reviewer
from sdlcflow.console.app import ConsoleConfig, create_app
from sdlcflow.core.decider import handle
from sdlcflow.core.events import Event, VerifiedState
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.identity import generate_key_pair
from sdlcflow.processors.trust import CredentialGate, Refusal, TrustedIssuers

REPO = "acme/login"
HOSTILE = '<img src=x onerror="alert(1)">'
SECRET = b"console-test-secret-0123456789abcdef"


class InProcessCoordinator:
    """Stands in for the broker plus coordinator: gate, core, decisions into the read model."""

    def __init__(self, driver: CoreDriver, gate: CredentialGate, store: ApprovalStore) -> None:
        self.driver, self.gate, self.store = driver, gate, store
        self.sent: list[Event] = []

    def publish(self, topic: str, event: Event) -> None:
        self.sent.append(event)
        admitted = self.gate.admit(event, event.envelope.occurred_at)
        assert not isinstance(admitted, Refusal), admitted
        self.driver.state, out = handle(self.driver.state, admitted, self.driver.config)
        for decision in out:
            self.store.apply_event(decision)

    def flush(self) -> None:
        """Delivery is synchronous here."""


class OfflineService(ApprovalsService):
    """The real service with the catch-up read replaced by the in-process coordinator."""

    def refresh(self, timeout_s: float = 30.0) -> SyncReport:
        return SyncReport(0, 0, 0)


@dataclass
class ConsoleWorld:
    client: TestClient
    store: ApprovalStore
    coordinator: InProcessCoordinator
    reviewer: ReviewerFiles
    approval_id: str


def make_world(tmp_path: Path, *, read_only: bool = False) -> ConsoleWorld:
    sample = SampleRepo.create(tmp_path / "git")
    head = sample.commit(
        sample.main,
        "feature",
        {"requirements.txt": b"pyjwt==3.0.0\n", "service/x.py": b"print('<script>x</script>')\n"},
    )
    bundle = assemble_evidence(
        EvidenceRequest(
            repo=REPO,
            change_id="chg-1",
            remote=sample.remote,
            base=sample.main,
            head=head,
            lockfile_digest="l1",
            test_results=({"name": "pytest", "outcome": "passed", "passed": 5},),
            policy_decision={"decision": "REVIEW", "reasons": [f"major bump {HOSTILE}"]},
            risk_score=72,
            environ={"AUTH_SECRET": "s3cret-value"},
        )
    )
    evidence = EvidenceStore.at(tmp_path / "artifacts")
    digest = evidence.put(bundle)
    store = ApprovalStore(tmp_path / "approvals.sqlite")
    driver = CoreDriver(REPO)
    state = VerifiedState(bundle.state.head_sha, bundle.state.base_sha, "l1", "art-1", "pol-1")
    store.apply_event(driver.to_approval("chg-1", state, digest))
    issuer = generate_key_pair("ops-console")
    files = issue_reviewer(tmp_path / "keys", "alice", issuer)
    gate = CredentialGate(TrustedIssuers.of({issuer.key_id: issuer.public_key}))
    coordinator = InProcessCoordinator(driver, gate, store)
    service = OfflineService(store, evidence, "unused:9092", publisher=lambda: coordinator)  # type: ignore[arg-type,return-value]
    reviewer = None if read_only else Reviewer.load(files.key_file, str(files.credential_file))
    app = create_app(ConsoleConfig(service, reviewer, decision_wait_s=0, secret=SECRET))
    return ConsoleWorld(TestClient(app), store, coordinator, files, "chg-1/approval")
