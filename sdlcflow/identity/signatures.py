"""Ed25519 signatures over digests of canonical bytes: events, evidence bundles, approvals.

Each kind of signed thing hashes a different domain tag in front of its canonical JSON, so a
signature made for one purpose (say an event) can never be replayed as another (an approval).
Signatures travel as `<key id>:<base64url signature>` so the verifier knows which key to use.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from sdlcflow.errors import SdlcflowError
from sdlcflow.identity.canonical import (
    DIGEST_PREFIX,
    canonical_bytes,
    float_free,
    plain_canonical_bytes,
    to_plain,
)
from sdlcflow.identity.keys import KeyPair, SignatureVerifier, b64url_decode, b64url_encode

EVENT_DOMAIN = b"sdlcflow/event/v1\n"
EVIDENCE_DOMAIN = b"sdlcflow/evidence/v1\n"
APPROVAL_DOMAIN = b"sdlcflow/approval/v1\n"


class SignatureRejected(SdlcflowError):
    """A signature is malformed, made by another key, or over different content."""


def _digest(domain: bytes, value: Any) -> str:
    return DIGEST_PREFIX + hashlib.sha256(domain + canonical_bytes(value)).hexdigest()


def _signed_bytes(key_id: str, digest: str) -> bytes:
    """What is signed: the content digest and the key id the signature names, so that no byte
    of the signature field can be changed without invalidating it."""
    return f"{key_id}:{digest}".encode()


def _sign(pair: KeyPair, digest: str) -> str:
    raw = pair.private_key.sign(_signed_bytes(pair.key_id, digest))
    return f"{pair.key_id}:{b64url_encode(raw)}"


def signature_key_id(signature: str) -> str:
    """The key id a signature claims, so the verifier can look the public key up."""
    key_id, sep, _ = signature.partition(":")
    if not sep or not key_id:
        raise SignatureRejected(
            f"signature {signature[:24]!r}... is not '<key id>:<base64url>'; re-sign it"
        )
    return key_id


def _verify(signature: str, digest: str, key: SignatureVerifier, what: str) -> None:
    key_id = signature_key_id(signature)
    try:
        raw = b64url_decode(signature.partition(":")[2])
    except ValueError as exc:
        raise SignatureRejected(f"{what} signature is not base64url: {exc}") from None
    try:
        key.verify(raw, _signed_bytes(key_id, digest))
    except InvalidSignature:
        raise SignatureRejected(
            f"{what} signature does not verify: the content changed after signing or another "
            "key signed it"
        ) from None


# ------------------------------------------------------------------------------------------
# Events


def event_digest(envelope: Any, payload: Any) -> str:
    """Digest of an event: its envelope (without `signature`) and payload, canonically encoded.

    `envelope` and `payload` may be dataclasses (sdlcflow.core.events) or plain mappings; the
    credential, actor, ids and times are all covered, so none can be swapped after signing.
    """
    plain = to_plain(envelope)
    if not isinstance(plain, dict):
        raise SignatureRejected("an envelope must encode to a JSON object")
    plain.pop("signature", None)
    signed = {"envelope": plain, "payload": to_plain(payload)}
    floats = not (float_free(type(envelope)) and float_free(type(payload)))
    canonical = plain_canonical_bytes(signed, floats=floats)
    return DIGEST_PREFIX + hashlib.sha256(EVENT_DOMAIN + canonical).hexdigest()


def sign_event(envelope: Any, payload: Any, pair: KeyPair) -> str:
    """The value for the envelope's `signature` field."""
    return _sign(pair, event_digest(envelope, payload))


def verify_event(envelope: Any, payload: Any, signature: str, key: SignatureVerifier) -> None:
    """Raise SignatureRejected unless `signature` signs exactly this envelope and payload."""
    _verify(signature, event_digest(envelope, payload), key, "event")


# ------------------------------------------------------------------------------------------
# Evidence bundles and approvals


class StateRef(BaseModel):
    """The exact state the evidence describes (mirrors sdlcflow.core.events.VerifiedState)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    head_sha: str
    base_sha: str = ""
    lockfile_digest: str = ""
    artifact_digest: str = ""


class EvidenceBundle(BaseModel):
    """What a reviewer sees and signs: the exact diff, tests, environment, policy evidence.

    Its digest is the one number console, CLI and coordinator compare: `evidence_digest`.
    Fields hold JSON values only; anything left out of the bundle is not covered by an approval.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: str
    change_id: str
    state: StateRef
    diff: str = ""
    test_results: tuple[dict[str, Any], ...] = ()
    environment: dict[str, Any] = Field(default_factory=dict)
    policy_bundle_digest: str = ""
    policy_decision: dict[str, Any] = Field(default_factory=dict)
    risk_score: int = Field(default=0, ge=0, le=100)
    required_approvals: int = Field(default=1, ge=0)
    replay_command: str = ""

    def digest(self) -> str:
        return evidence_digest(self)


def evidence_digest(bundle: EvidenceBundle | Mapping[str, Any]) -> str:
    """`sha256:<hex>` over the domain tag and the canonical JSON of the bundle.

    A mapping is first validated as an EvidenceBundle, so defaults are filled in the same way
    whoever computes the digest.
    """
    model = bundle if isinstance(bundle, EvidenceBundle) else EvidenceBundle.model_validate(bundle)
    return _digest(EVIDENCE_DOMAIN, model.model_dump(mode="json"))


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class ApprovalStatement:
    """What a reviewer's signature commits to: this verdict on this evidence for this task."""

    approval_id: str
    repo: str
    change_id: str
    reviewer: str
    verdict: Verdict
    evidence_digest: str
    signed_at: int
    comment: str = ""

    def digest(self) -> str:
        return _digest(APPROVAL_DOMAIN, dataclasses.asdict(self) | {"verdict": self.verdict.value})


def sign_approval(statement: ApprovalStatement, pair: KeyPair) -> str:
    """The reviewer's signature over the statement's digest."""
    return _sign(pair, statement.digest())


def verify_approval(
    statement: ApprovalStatement,
    signature: str,
    key: Ed25519PublicKey,
    *,
    expected_evidence_digest: str,
) -> None:
    """Raise SignatureRejected unless the signature is good and the evidence is still current.

    `expected_evidence_digest` is the digest of the evidence for the change's current state;
    an approval of older evidence (any input SHA moved) is stale and refused.
    """
    _verify(signature, statement.digest(), key, "approval")
    if statement.evidence_digest != expected_evidence_digest:
        raise SignatureRejected(
            f"approval covers evidence {statement.evidence_digest} but the change's current "
            f"evidence is {expected_evidence_digest}; the state moved, review it again"
        )
