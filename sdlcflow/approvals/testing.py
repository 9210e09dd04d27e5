"""Test helpers shipped with the package: reviewer identities and coordinator decisions.

Used by sdlcflow's own unit, integration and browser tests, and by anyone testing a tool that
reads approvals: they build the same credentials, keys and events production uses.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdlcflow.core import events as ev
from sdlcflow.core.decider import CoreConfig, handle
from sdlcflow.core.events import (
    Actor,
    ActorKind,
    ActorScope,
    Envelope,
    Event,
    Payload,
    VerifiedState,
)
from sdlcflow.core.planner import load_templates, packaged_template_texts
from sdlcflow.core.state import RepoState
from sdlcflow.identity import (
    CredentialClaims,
    KeyPair,
    generate_key_pair,
    issue_credential,
    save_private_key,
)

HOUR_MS = 3_600_000
COORDINATOR_ACTOR = Actor(ActorKind.COORDINATOR, "coordinator")


@dataclass(frozen=True)
class ReviewerFiles:
    """A reviewer's private key file and credential file, as ops would hand them out."""

    subject: str
    key_file: Path
    credential_file: Path
    key: KeyPair
    token: str


def issue_reviewer(
    directory: Path,
    subject: str,
    issuer: KeyPair,
    *,
    kind: ActorKind = ActorKind.HUMAN,
    capabilities: Sequence[str] = (ev.REVIEW_CAPABILITY,),
    repos: Sequence[str] = ("*",),
    issued_at: int | None = None,
    ttl_ms: int = 2 * HOUR_MS,
    bind_key: KeyPair | None = None,
) -> ReviewerFiles:
    """A fresh key (0600 file) and a credential signed by `issuer` that binds its public half."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key_pair(f"{subject}-key")
    key_file = directory / f"{subject}.key"
    save_private_key(key, key_file)
    at = issued_at if issued_at is not None else int(time.time() * 1000) - 300_000
    claims = CredentialClaims(
        credential_id=f"cred-{uuid.uuid4().hex[:12]}",
        subject=subject,
        kind=kind,
        capabilities=tuple(capabilities),
        repos=tuple(repos),
        paths=("*",),
        environments=(),
        issued_at=at,
        expires_at=at + ttl_ms,
        issuer_key_id=issuer.key_id,
        actor_key=(bind_key or key).public_key_b64,
    )
    token = issue_credential(claims, issuer)
    credential_file = directory / f"{subject}.credential"
    credential_file.write_text(token + "\n", encoding="ascii")
    return ReviewerFiles(subject, key_file, credential_file, key, token)


def decision(
    payload: Payload,
    *,
    repo: str,
    change_id: str,
    task_id: str | None = None,
    causation_id: str | None = None,
    occurred_at: int = 1_700_000_000_000,
    event_id: str | None = None,
) -> Event:
    """A coordinator decision as it appears on `sdlc.coordinator`."""
    return Event(
        Envelope(
            event_id=event_id or str(uuid.uuid4()),
            type=type(payload).__name__,
            occurred_at=occurred_at,
            repo=repo,
            change_id=change_id,
            task_id=task_id,
            trace_id=uuid.uuid4().hex,
            causation_id=causation_id,
            actor=COORDINATOR_ACTOR,
        ),
        payload,
    )


def approval_requested(
    repo: str,
    change_id: str,
    state: VerifiedState,
    evidence_digest: str,
    *,
    required: int = 1,
    occurred_at: int = 1_700_000_000_000,
) -> Event:
    """The ApprovalRequested the coordinator emits for `<change_id>/approval`."""
    return decision(
        ev.ApprovalRequested(required, state, evidence_digest),
        repo=repo,
        change_id=change_id,
        task_id=f"{change_id}/approval",
        occurred_at=occurred_at,
    )


@dataclass
class CoreDriver:
    """Drives one change through the real pure core up to its approval task.

    The decisions it returns are exactly what the coordinator would publish on
    `sdlc.coordinator`, and `state` is the coordinator's state after them, so a test can hand
    both to a real CoordinatorEngine and let it judge the reviewer's decision.
    """

    repo: str
    state: RepoState = field(default_factory=RepoState)
    log: list[Event] = field(default_factory=list)
    now: int = field(default_factory=lambda: int(time.time() * 1000) - 60_000)
    config: CoreConfig = field(
        default_factory=lambda: CoreConfig(templates=load_templates(packaged_template_texts()))
    )

    def _feed(
        self, payload: Payload, actor: Actor, change_id: str, task_id: str | None
    ) -> list[Event]:
        self.now += 10
        scope = None
        if actor.kind is ActorKind.AGENT:
            scope = ActorScope(actor.id, actor.kind, _AGENT_CAPS, (self.repo,), ("*",), (), 2**62)
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            type=type(payload).__name__,
            occurred_at=self.now,
            repo=self.repo,
            change_id=change_id,
            task_id=task_id,
            trace_id=uuid.uuid4().hex,
            causation_id=None,
            actor=actor,
        )
        self.state, out = handle(self.state, Event(envelope, payload, scope), self.config)
        self.log.extend(out)
        return list(out)

    def _step(self, change_id: str, step: str, **result: object) -> list[Event]:
        task = self.state.changes[change_id].tasks[f"{change_id}/{step}"]
        agent = Actor(ActorKind.AGENT, f"{step}-agent")
        granted = self._feed(
            ev.LeaseRequested(task.contract.capability), agent, change_id, task.contract.id
        )
        lease = next(e.payload for e in granted if isinstance(e.payload, ev.LeaseGranted))
        succeeded = ev.TaskSucceeded(
            lease.lease_id,
            lease.epoch,
            task.contract.inputs,
            ev.Outputs(),
            **result,  # type: ignore[arg-type]
        )
        return self._feed(succeeded, agent, change_id, task.contract.id)

    def to_approval(
        self,
        change_id: str,
        state: VerifiedState,
        evidence_digest: str,
        *,
        submitted_by: str = "webhook",
    ) -> Event:
        """Request, lint, test and a REVIEW policy outcome; returns the ApprovalRequested."""
        request = ev.ChangeRequested(
            "code",
            "code-change",
            state.base_sha,
            state.head_sha,
            state.lockfile_digest,
            title=change_id,
            paths=("requirements.txt",),
            environments=("prod",),
        )
        self._feed(request, Actor(ActorKind.PRODUCER, submitted_by), change_id, None)
        self._step(change_id, "lint")
        tested = VerifiedState(
            state.head_sha, state.base_sha, state.lockfile_digest, state.artifact_digest
        )
        self._step(change_id, "test", verified=tested)
        outcome = ev.PolicyOutcome(
            ev.PolicyDecision.REVIEW, True, state.policy_revision, evidence_digest, ("review",)
        )
        out = self._step(change_id, "policy", policy=outcome)
        return next(e for e in out if isinstance(e.payload, ev.ApprovalRequested))


_AGENT_CAPS = ("lint", "test", "policy", "merge", "promote")
