"""Identities of agents, reviewers and ops: Ed25519 keys, scoped credentials, signatures."""

from sdlcflow.identity.canonical import canonical_bytes, canonical_digest
from sdlcflow.identity.credentials import (
    CredentialClaims,
    CredentialIssueError,
    CredentialRejected,
    RejectReason,
    issue_credential,
    verify_claims,
    verify_credential,
)
from sdlcflow.identity.keys import (
    KeyFileError,
    KeyPair,
    decode_public_key,
    encode_public_key,
    generate_key_pair,
    load_private_key,
    save_private_key,
)
from sdlcflow.identity.signatures import (
    ApprovalStatement,
    EvidenceBundle,
    SignatureRejected,
    StateRef,
    Verdict,
    event_digest,
    evidence_digest,
    sign_approval,
    sign_event,
    verify_approval,
    verify_event,
)

__all__ = [
    "ApprovalStatement",
    "CredentialClaims",
    "CredentialIssueError",
    "CredentialRejected",
    "EvidenceBundle",
    "KeyFileError",
    "KeyPair",
    "RejectReason",
    "SignatureRejected",
    "StateRef",
    "Verdict",
    "canonical_bytes",
    "canonical_digest",
    "decode_public_key",
    "encode_public_key",
    "event_digest",
    "evidence_digest",
    "generate_key_pair",
    "issue_credential",
    "load_private_key",
    "save_private_key",
    "sign_approval",
    "sign_event",
    "verify_approval",
    "verify_claims",
    "verify_credential",
    "verify_event",
]
