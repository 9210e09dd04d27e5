"""Signed reviewer decisions: who the reviewer is, what they sign, and what came of it.

A decision is an ApprovalSigned or ApprovalRejected input on `sdlc.agent-events`. Its payload
names the verified state and the evidence digest; the envelope carries the reviewer's scoped
credential and an Ed25519 signature over envelope and payload (`identity.sign_event`), so the
signature covers the evidence digest: the reviewer signs exactly the bundle they were shown.

The coordinator is the authority (signature, reviewer scope, staleness, finished task). The
checks here only fail early with a clear message for what can be known locally.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.approvals.evidence import EvidenceError, EvidenceStore
from sdlcflow.approvals.store import Approval, ApprovalStatus, Outcome
from sdlcflow.core import events as ev
from sdlcflow.core.events import (
    REVIEW_CAPABILITY,
    Actor,
    ActorKind,
    Envelope,
    Event,
    reviewer_group_capability,
)
from sdlcflow.errors import SdlcflowError
from sdlcflow.identity import (
    CredentialClaims,
    EvidenceBundle,
    KeyFileError,
    KeyPair,
    load_private_key,
    sign_event,
)
from sdlcflow.identity.credentials import TOKEN_PREFIX
from sdlcflow.identity.keys import b64url_decode
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import AGENT_EVENTS
from sdlcflow.tracing import new_trace

CREDENTIAL_ENV = "SDLCFLOW_REVIEWER_CREDENTIAL"
KEY_ENV = "SDLCFLOW_REVIEWER_KEY"
MAX_COMMENT = 2000


class ReviewerError(SdlcflowError):
    """The reviewer's key or credential cannot be used to sign this decision."""


class DecisionRefused(SdlcflowError):
    """The decision was not sent: the approval is decided, stale, or its evidence is missing."""


def read_claims(token: str) -> CredentialClaims:
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise ReviewerError(
            f"the credential is not an '{TOKEN_PREFIX}.<claims>.<signature>' token; ask ops for "
            "a reviewer credential (`sdlcflow keys issue --kind human --capability approval`)"
        )
    try:
        body = json.loads(b64url_decode(parts[1]))
        if not isinstance(body, dict):
            raise TypeError("claims are not a JSON object")
        return CredentialClaims.from_json(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise ReviewerError(f"the credential's claims are malformed ({exc})") from None


def read_credential(value: str | None) -> str:
    """A token given inline or as a file path; when None or empty, from the environment."""
    text = (value or os.environ.get(CREDENTIAL_ENV, "")).strip()
    if not text:
        raise ReviewerError(
            f"no reviewer credential: pass --credential FILE (or the token) or set {CREDENTIAL_ENV}"
        )
    if text.startswith(f"{TOKEN_PREFIX}."):
        return text
    path = Path(text)
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ReviewerError(f"cannot read credential file {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Reviewer:
    """A human reviewer: Ed25519 key plus the scoped credential that binds its public half."""

    key: KeyPair
    credential: str
    claims: CredentialClaims

    @property
    def actor_id(self) -> str:
        return self.claims.subject

    @classmethod
    def load(cls, key_file: Path | str | None, credential: str | None) -> Reviewer:
        """Load and cross-check key and credential; errors name the file and the fix."""
        key_path = str(key_file or os.environ.get(KEY_ENV, "")).strip()
        if not key_path:
            raise ReviewerError(f"no reviewer key: pass --key FILE or set {KEY_ENV}")
        try:
            pair = load_private_key(Path(key_path))
        except KeyFileError as exc:
            raise ReviewerError(f"bad key file: {exc}") from None
        token = read_credential(credential)
        claims = read_claims(token)
        if claims.kind is not ActorKind.HUMAN:
            raise ReviewerError(
                f"the credential is for a {claims.kind.value}; reviewers need a human credential"
            )
        if claims.actor_key is not None and claims.actor_key != pair.public_key_b64:
            raise ReviewerError(
                f"the credential of {claims.subject} is bound to another public key than the "
                f"one in {key_path}; use the key the credential was issued for"
            )
        return cls(pair, token, claims)

    def check(self, approval: Approval, now_ms: int) -> None:
        """Refuse early what the coordinator would refuse for this reviewer anyway."""
        claims = self.claims
        if now_ms >= claims.expires_at:
            raise ReviewerError(
                f"credential {claims.credential_id} of {claims.subject} expired at "
                f"{claims.expires_at} ms; ask ops for a new one"
            )
        accepted = [REVIEW_CAPABILITY]
        if approval.escalated_to:
            accepted.append(reviewer_group_capability(approval.escalated_to))
        if not any(capability in claims.capabilities for capability in accepted):
            wanted = " or ".join(repr(c) for c in accepted)
            raise ReviewerError(
                f"credential of {claims.subject} lacks the {wanted} capability "
                f"(has {sorted(claims.capabilities)}); ask ops for a reviewer credential"
            )
        if not any(fnmatch.fnmatchcase(approval.repo, p) for p in claims.repos):
            raise ReviewerError(
                f"credential of {claims.subject} covers repos {sorted(claims.repos)}, not "
                f"{approval.repo!r}"
            )


def check_decidable(approval: Approval, evidence: EvidenceStore | None) -> EvidenceBundle | None:
    """The bundle the reviewer is deciding on; refuses a decided approval or missing evidence."""
    if approval.status is not ApprovalStatus.PENDING:
        detail = f": {approval.reason}" if approval.reason else ""
        raise DecisionRefused(
            f"approval {approval.id} is already {approval.status.value}{detail}; nothing to decide"
        )
    if evidence is None:
        return None
    try:
        bundle = evidence.get(approval.evidence_digest)
    except EvidenceError as exc:
        raise DecisionRefused(
            f"cannot show the evidence of {approval.id}, so it cannot be decided: {exc}"
        ) from None
    if bundle.state.head_sha != approval.state.head_sha:
        raise DecisionRefused(
            f"evidence {approval.evidence_digest} describes head {bundle.state.head_sha}, the "
            f"approval is for {approval.state.head_sha}; the evidence is stale"
        )
    return bundle


def decision_event(
    approval: Approval,
    reviewer: Reviewer,
    *,
    approve: bool,
    comment: str,
    now_ms: int,
    event_id: str | None = None,
) -> Event:
    """The signed ApprovalSigned / ApprovalRejected input for `approval`."""
    if len(comment) > MAX_COMMENT:
        raise DecisionRefused(
            f"the comment has {len(comment)} characters; keep it to {MAX_COMMENT}"
        )
    payload: ev.ApprovalSigned | ev.ApprovalRejected
    if approve:
        payload = ev.ApprovalSigned(approval.state, approval.evidence_digest, comment)
    else:
        payload = ev.ApprovalRejected(approval.state, approval.evidence_digest, comment)
    envelope = Envelope(
        event_id=event_id or str(uuid.uuid4()),
        type=type(payload).__name__,
        occurred_at=now_ms,
        repo=approval.repo,
        change_id=approval.change_id,
        task_id=approval.id,
        trace_id=new_trace().trace_id,
        causation_id=approval.requested_event_id,
        actor=Actor(ActorKind.HUMAN, reviewer.actor_id),
        credential=reviewer.credential,
    )
    signed = dataclasses.replace(envelope, signature=sign_event(envelope, payload, reviewer.key))
    return Event(signed, payload)


def send_decision(publisher: EventPublisher, event: Event, topic: str = AGENT_EVENTS) -> None:
    """Publish to `sdlc.agent-events` and wait for the broker to confirm it."""
    publisher.publish(topic, event)
    publisher.flush()


def now_ms() -> int:
    return int(time.time() * 1000)


def outcome_text(outcome: Outcome | None) -> str:
    """One line for people: accepted, or rejected with the coordinator's reason."""
    if outcome is None:
        return "sent; the coordinator has not decided on it yet (check `sdlcflow approvals show`)"
    if outcome.accepted:
        return f"accepted by the coordinator: {outcome.detail}"
    return f"REJECTED by the coordinator ({outcome.type}): {outcome.detail}"
