"""Test helpers shipped with the package: reviewer identities and coordinator decisions.

Used by sdlcflow's own unit, integration and browser tests, and by anyone testing a tool that
reads approvals: they build the same credentials, keys and events production uses.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event, Payload, VerifiedState
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
    ttl_ms: int = HOUR_MS,
    bind_key: KeyPair | None = None,
) -> ReviewerFiles:
    """A fresh key (0600 file) and a credential signed by `issuer` that binds its public half."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key_pair(f"{subject}-key")
    key_file = directory / f"{subject}.key"
    save_private_key(key, key_file)
    at = issued_at if issued_at is not None else int(time.time() * 1000) - 1000
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
