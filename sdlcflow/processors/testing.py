"""Helpers for tests and benchmarks of the coordinator: a test issuer, signed actors, inputs.

issuer = TestIssuer.new()
lint = issuer.actor("lint-bot", capabilities=("lint",), repos=("acme/*",))
event = lint.event(LeaseRequested("lint"), repo="acme/web", change_id=c, task_id=t, at=now)
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.core.events import (
    Actor,
    ActorKind,
    ChangeRequested,
    Envelope,
    Event,
    Payload,
)
from sdlcflow.identity import (
    CredentialClaims,
    KeyPair,
    generate_key_pair,
    issue_credential,
    sign_event,
)
from sdlcflow.processors.trust import TrustedIssuers
from sdlcflow.tracing import new_trace_id

HOUR_MS = 3600 * 1000


@dataclass(frozen=True)
class SignedActor:
    """An agent, human or ops actor with a credential and the key that signs its events."""

    actor: Actor
    key: KeyPair
    credential: str

    def event(
        self,
        payload: Payload,
        *,
        repo: str,
        at: int,
        change_id: str | None = None,
        task_id: str | None = None,
        trace_id: str | None = None,
        event_id: str | None = None,
    ) -> Event:
        """A signed input event of this actor."""
        envelope = Envelope(
            event_id=event_id or str(uuid.uuid4()),
            type=type(payload).__name__,
            occurred_at=at,
            repo=repo,
            change_id=change_id,
            task_id=task_id,
            trace_id=trace_id or new_trace_id(),
            causation_id=None,
            actor=self.actor,
            credential=self.credential,
        )
        signature = sign_event(envelope, payload, self.key)
        return Event(
            Envelope(**{**envelope.__dict__, "signature": signature}),
            payload,
        )


@dataclass(frozen=True)
class TestIssuer:
    """An ops issuer key that the coordinator under test trusts."""

    __test__ = False  # not a pytest test class

    key: KeyPair

    @classmethod
    def new(cls, key_id: str | None = None) -> TestIssuer:
        return cls(generate_key_pair(key_id or f"test-issuer-{uuid.uuid4().hex[:8]}"))

    def trusted(self) -> TrustedIssuers:
        return TrustedIssuers.of({self.key.key_id: self.key.public_key})

    def write_trust_file(self, path: Path) -> Path:
        """Write the issuers file the worker reads (SDLCFLOW_TRUSTED_ISSUERS)."""
        path.write_text(json.dumps({self.key.key_id: self.key.public_key_b64}), "utf-8")
        return path

    def actor(
        self,
        actor_id: str,
        *,
        kind: ActorKind = ActorKind.AGENT,
        capabilities: tuple[str, ...],
        repos: tuple[str, ...] = ("*",),
        paths: tuple[str, ...] = ("**", "*"),
        environments: tuple[str, ...] = ("*",),
        issued_at: int,
        ttl_ms: int = HOUR_MS,
    ) -> SignedActor:
        """A new actor key and a credential for it, bound to that key."""
        key = generate_key_pair(f"{actor_id}-key".replace(".", "-"))
        claims = CredentialClaims(
            credential_id=str(uuid.uuid4()),
            subject=actor_id,
            kind=kind,
            capabilities=capabilities,
            repos=repos,
            paths=paths,
            environments=environments,
            issued_at=issued_at,
            expires_at=issued_at + ttl_ms,
            issuer_key_id=self.key.key_id,
            actor_key=key.public_key_b64,
        )
        return SignedActor(Actor(kind, actor_id), key, issue_credential(claims, self.key))


def change_request(
    repo: str,
    *,
    at: int,
    template: str = "code-change",
    change_id: str | None = None,
    head_sha: str = "h" * 40,
    base_sha: str = "b" * 40,
    lockfile_digest: str = "sha256:lock",
    producer: str = "test-producer",
) -> Event:
    """A producer's ChangeRequested (producers need no credential)."""
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        type="ChangeRequested",
        occurred_at=at,
        repo=repo,
        change_id=change_id or str(uuid.uuid4()),
        task_id=None,
        trace_id=new_trace_id(),
        causation_id=None,
        actor=Actor(ActorKind.PRODUCER, producer),
    )
    payload = ChangeRequested(
        kind="code",
        template=template,
        base_sha=base_sha,
        head_sha=head_sha,
        lockfile_digest=lockfile_digest,
    )
    return Event(envelope, payload)
