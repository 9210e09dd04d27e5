"""One entry point for the CLI and the console: refresh, look up, and decide approvals."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.approvals.decisions import (
    Reviewer,
    check_decidable,
    decision_event,
    now_ms,
    send_decision,
)
from sdlcflow.approvals.evidence import EvidenceStore, default_evidence_root
from sdlcflow.approvals.store import Approval, ApprovalStore, Outcome
from sdlcflow.approvals.sync import SyncReport, sync_approvals
from sdlcflow.core.events import Event
from sdlcflow.identity import EvidenceBundle
from sdlcflow.settings import Settings
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR


@dataclass(frozen=True)
class Sent:
    """A decision that reached the log, and what the coordinator made of it (if it answered)."""

    event: Event
    outcome: Outcome | None


class ApprovalsService:
    """The read model, the evidence store and the way to the broker, used together.

    Args:
        store: the local approvals read model.
        evidence: where evidence bundles are fetched from.
        bootstrap: Kafka bootstrap servers.
        topic: the coordinator's decisions topic (tests use a private copy).
        decisions_topic: where reviewer decisions are sent (default `sdlc.agent-events`).
        publisher: a factory for the producer (created on first decision).
    """

    def __init__(
        self,
        store: ApprovalStore,
        evidence: EvidenceStore,
        bootstrap: str,
        *,
        topic: str = COORDINATOR,
        decisions_topic: str = AGENT_EVENTS,
        publisher: Callable[[], EventPublisher] | None = None,
    ) -> None:
        self.store = store
        self.evidence = evidence
        self.bootstrap = bootstrap
        self.topic = topic
        self.decisions_topic = decisions_topic
        self._make_publisher = publisher or (lambda: EventPublisher(bootstrap))
        self._publisher: EventPublisher | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store_path: Path | None = None) -> ApprovalsService:
        store = ApprovalStore(store_path or settings.data_dir / "approvals.sqlite")
        evidence = EvidenceStore.at(default_evidence_root(settings.data_dir))
        return cls(store, evidence, settings.kafka_bootstrap)

    def refresh(self, timeout_s: float = 30.0) -> SyncReport:
        return sync_approvals(self.store, self.bootstrap, topic=self.topic, timeout_s=timeout_s)

    def approval(self, approval_id: str) -> Approval:
        return self.store.get(approval_id)

    def bundle(self, approval: Approval) -> EvidenceBundle:
        return self.evidence.get(approval.evidence_digest)

    def decide(
        self,
        approval_id: str,
        reviewer: Reviewer,
        *,
        approve: bool,
        comment: str,
        wait_s: float = 10.0,
    ) -> Sent:
        """Check, sign, send, then wait up to `wait_s` for the coordinator's verdict."""
        approval = self.store.get(approval_id)
        check_decidable(approval, self.evidence)
        at = now_ms()
        reviewer.check(approval, at)
        event = decision_event(approval, reviewer, approve=approve, comment=comment, now_ms=at)
        if self._publisher is None:
            self._publisher = self._make_publisher()
        send_decision(self._publisher, event, self.decisions_topic)
        return Sent(event, self.wait_for_outcome(event.event_id, wait_s))

    def wait_for_outcome(self, event_id: str, wait_s: float) -> Outcome | None:
        deadline = time.monotonic() + wait_s
        while True:
            self.refresh(timeout_s=max(5.0, wait_s))
            outcome = self.store.outcome(event_id)
            if outcome is not None or time.monotonic() >= deadline:
                return outcome
            time.sleep(0.2)  # polling the log between catch-up reads, not standing in for work
