"""Switching a policy between audit and enforce, as a signed ops event with a reason.

The switch is a PolicyModeChanged input on `sdlc.agent-events`, signed by an operator whose
credential the coordinator's gate verifies, so every rollout step says who switched, when and
why (`ModeChange.from_event` reads it back). The coordinator accepts it as a PolicyModeSet
decision and every later offer of the repository carries the mode to the policy agent. A switch
without a reason is refused here.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.approvals.decisions import read_claims, read_credential
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.errors import SdlcflowError
from sdlcflow.identity import CredentialClaims, KeyFileError, KeyPair, load_private_key, sign_event
from sdlcflow.policy.modes import Mode
from sdlcflow.tracing import new_trace

MAX_REASON = 2000


class ModeChangeError(SdlcflowError):
    """A mode switch cannot be sent; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class Operator:
    """An ops identity: Ed25519 key plus the scoped credential that binds its public half."""

    key: KeyPair
    credential: str
    claims: CredentialClaims

    @classmethod
    def load(cls, key_file: Path, credential: str) -> Operator:
        try:
            pair = load_private_key(key_file)
        except KeyFileError as exc:
            raise ModeChangeError(f"bad ops key file: {exc}") from None
        token = read_credential(credential)
        claims = read_claims(token)
        if claims.kind is not ActorKind.OPS:
            raise ModeChangeError(
                f"the credential is for a {claims.kind.value}; switching a policy's mode needs "
                "an ops credential (`sdlcflow keys issue --kind ops`)"
            )
        if claims.actor_key is not None and claims.actor_key != pair.public_key_b64:
            raise ModeChangeError(
                f"the credential of {claims.subject} is bound to another public key than the "
                f"one in {key_file}; use the key the credential was issued for"
            )
        return cls(pair, token, claims)


def mode_change_event(
    operator: Operator,
    *,
    policy: str,
    mode: Mode,
    reason: str,
    repo: str,
    now_ms: int,
    event_id: str | None = None,
) -> Event:
    """The signed PolicyModeChanged input; refuses a blank or overlong reason."""
    reason = reason.strip()
    if not reason:
        raise ModeChangeError(
            "a mode switch needs a reason (--reason): the rollout record says why it happened"
        )
    if len(reason) > MAX_REASON:
        raise ModeChangeError(f"the reason has {len(reason)} characters; keep it to {MAX_REASON}")
    if not policy.strip():
        raise ModeChangeError("name the policy to switch (or `*` for every policy)")
    payload = ev.PolicyModeChanged(policy=policy, enforced=mode is Mode.ENFORCE, reason=reason)
    envelope = Envelope(
        event_id=event_id or str(uuid.uuid4()),
        type="PolicyModeChanged",
        occurred_at=now_ms,
        repo=repo,
        change_id=None,
        task_id=None,
        trace_id=new_trace().trace_id,
        causation_id=None,
        actor=Actor(ActorKind.OPS, operator.claims.subject),
        credential=operator.credential,
    )
    signed = dataclasses.replace(envelope, signature=sign_event(envelope, payload, operator.key))
    return Event(signed, payload)
