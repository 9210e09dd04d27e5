"""Scoped short-lived credentials: compact Ed25519-signed tokens issued by an ops key.

Format: `sdlc1.<claims>.<signature>`, each segment unpadded base64url. `claims` is the
canonical JSON of the claim object (see `CredentialClaims.to_json`); the signature is Ed25519
over the ASCII bytes `sdlc1.<claims>`. The issuer's key id (`kid`) sits in the claims, so
several issuer keys can be trusted at once while keys rotate.

Everything here is pure: time is an argument (`at_ms`), never read from a clock.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sdlcflow.core.events import ActorKind, ActorScope
from sdlcflow.errors import SdlcflowError
from sdlcflow.identity.canonical import canonical_bytes
from sdlcflow.identity.keys import KeyPair, b64url_decode, b64url_encode

TOKEN_PREFIX = "sdlc1"
CLAIMS_VERSION = 1
DEFAULT_MAX_TTL_MS = 24 * 60 * 60 * 1000


class RejectReason(StrEnum):
    """Why a credential was refused; stable strings for events and metrics."""

    MALFORMED = "malformed"
    UNKNOWN_ISSUER = "unknown_issuer"
    FORGED = "forged"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    RETIRED_ISSUER = "retired_issuer"


class CredentialRejected(SdlcflowError):
    """A credential failed verification; `reason` says which check, the message says why."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(f"credential rejected ({reason.value}): {message}")
        self.reason = reason


class CredentialIssueError(SdlcflowError):
    """The claims asked for cannot be issued (empty scope, too long a lifetime, bad times)."""


@dataclass(frozen=True)
class CredentialClaims:
    """What an issuer vouches for: who, what kind, what it may do and where, and until when.

    `credential_id` names this one token (for revocation); `issuer_key_id` names the key that
    signed it; `actor_key` optionally binds the actor's own Ed25519 public key (base64url) so
    the events it signs can be checked against the credential.
    """

    credential_id: str
    subject: str
    kind: ActorKind
    capabilities: tuple[str, ...]
    repos: tuple[str, ...]
    paths: tuple[str, ...]
    environments: tuple[str, ...]
    issued_at: int
    expires_at: int
    issuer_key_id: str
    actor_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": CLAIMS_VERSION,
            "jti": self.credential_id,
            "sub": self.subject,
            "kind": self.kind.value,
            "caps": list(self.capabilities),
            "repos": list(self.repos),
            "paths": list(self.paths),
            "envs": list(self.environments),
            "iat": self.issued_at,
            "exp": self.expires_at,
            "kid": self.issuer_key_id,
        }
        if self.actor_key is not None:
            body["key"] = self.actor_key
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CredentialClaims:
        """Parse claims, raising ValueError/KeyError/TypeError on any shape problem."""
        if body.get("v") != CLAIMS_VERSION:
            raise ValueError(f"claims version {body.get('v')!r}, expected {CLAIMS_VERSION}")
        return cls(
            credential_id=_str(body["jti"]),
            subject=_str(body["sub"]),
            kind=ActorKind(body["kind"]),
            capabilities=_strs(body["caps"]),
            repos=_strs(body["repos"]),
            paths=_strs(body["paths"]),
            environments=_strs(body["envs"]),
            issued_at=_int(body["iat"]),
            expires_at=_int(body["exp"]),
            issuer_key_id=_str(body["kid"]),
            actor_key=_str(body["key"]) if "key" in body else None,
        )

    def to_scope(self) -> ActorScope:
        """The core's view of these claims (invariant 8 is checked against it)."""
        return ActorScope(
            actor_id=self.subject,
            kind=self.kind,
            capabilities=self.capabilities,
            repos=self.repos,
            paths=self.paths,
            environments=self.environments,
            expires_at=self.expires_at,
        )


def _str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {value!r}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def issue_credential(
    claims: CredentialClaims, issuer: KeyPair, *, max_ttl_ms: int = DEFAULT_MAX_TTL_MS
) -> str:
    """Sign `claims` with the issuer key; refuses long-lived or inconsistent credentials."""
    if claims.issuer_key_id != issuer.key_id:
        raise CredentialIssueError(
            f"claims name issuer key {claims.issuer_key_id!r} but the signing key is "
            f"{issuer.key_id!r}; set issuer_key_id to the signing key's id"
        )
    lifetime = claims.expires_at - claims.issued_at
    if lifetime <= 0:
        raise CredentialIssueError("expires_at must be after issued_at")
    if lifetime > max_ttl_ms:
        raise CredentialIssueError(
            f"lifetime {lifetime} ms exceeds the maximum {max_ttl_ms} ms; issue a shorter "
            "credential and renew it"
        )
    if not claims.capabilities:
        raise CredentialIssueError("a credential needs at least one capability")
    payload = b64url_encode(canonical_bytes(claims.to_json()))
    signing_input = f"{TOKEN_PREFIX}.{payload}"
    signature = issuer.private_key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def verify_claims(
    token: str,
    trusted_issuers: Mapping[str, Ed25519PublicKey],
    at_ms: int,
    *,
    revoked_credentials: Collection[str] = (),
    revoked_actors: Mapping[str, int] | None = None,
    retired_keys: Mapping[str, int] | None = None,
    leeway_ms: int = 0,
) -> CredentialClaims:
    """Check a token completely and return its claims, or raise CredentialRejected.

    Order of checks: shape, issuer known, signature, validity window, revocation. A token
    with an unknown `kid` is reported as unknown_issuer even if its signature is bad.
    `revoked_credentials` holds credential ids; `revoked_actors` maps an actor id to the time
    its credentials were revoked, so credentials issued at or before that time are refused
    while ones issued afterwards work again. `retired_keys` maps a rotated-out issuer key id
    to its retirement time: it still vouches for credentials it signed before then (they
    drain), never for later ones (see `sdlcflow.identity.issuers`).
    """
    payload, signature, signing_input = _split(token)
    claims = _parse_claims(payload)
    key = trusted_issuers.get(claims.issuer_key_id)
    if key is None:
        raise CredentialRejected(
            RejectReason.UNKNOWN_ISSUER,
            f"issuer key {claims.issuer_key_id!r} is not trusted "
            f"(trusted: {', '.join(sorted(trusted_issuers)) or 'none'})",
        )
    try:
        key.verify(signature, signing_input)
    except InvalidSignature:
        raise CredentialRejected(
            RejectReason.FORGED,
            f"signature does not match issuer key {claims.issuer_key_id!r}; the token was "
            "altered or signed by another key",
        ) from None
    _check_retirement(claims, retired_keys)
    _check_window(claims, at_ms, leeway_ms)
    check_revocation(claims, revoked_credentials, revoked_actors)
    return claims


def verify_credential(
    token: str,
    trusted_issuers: Mapping[str, Ed25519PublicKey],
    at_ms: int,
    *,
    revoked_credentials: Collection[str] = (),
    revoked_actors: Mapping[str, int] | None = None,
    retired_keys: Mapping[str, int] | None = None,
    leeway_ms: int = 0,
) -> ActorScope:
    """Verify a token (see `verify_claims`) and return the actor's scope for the core."""
    return verify_claims(
        token,
        trusted_issuers,
        at_ms,
        revoked_credentials=revoked_credentials,
        revoked_actors=revoked_actors,
        retired_keys=retired_keys,
        leeway_ms=leeway_ms,
    ).to_scope()


def _split(token: str) -> tuple[str, bytes, bytes]:
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise CredentialRejected(
            RejectReason.MALFORMED,
            f"expected '{TOKEN_PREFIX}.<claims>.<signature>' with 3 dot-separated parts",
        )
    if not parts[1].isascii():
        raise CredentialRejected(RejectReason.MALFORMED, "claims segment is not base64url")
    try:
        signature = b64url_decode(parts[2])
    except ValueError as exc:
        raise CredentialRejected(RejectReason.MALFORMED, f"signature segment: {exc}") from None
    return parts[1], signature, f"{parts[0]}.{parts[1]}".encode("ascii")


def _parse_claims(payload: str) -> CredentialClaims:
    try:
        body = json.loads(b64url_decode(payload))
        if not isinstance(body, dict):
            raise TypeError("claims are not a JSON object")
        return CredentialClaims.from_json(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialRejected(RejectReason.MALFORMED, f"claims segment: {exc}") from None


def _check_retirement(claims: CredentialClaims, retired_keys: Mapping[str, int] | None) -> None:
    retired_at = (retired_keys or {}).get(claims.issuer_key_id)
    if retired_at is None:
        return
    if claims.issued_at > retired_at or claims.expires_at > retired_at + DEFAULT_MAX_TTL_MS:
        raise CredentialRejected(
            RejectReason.RETIRED_ISSUER,
            f"issuer key {claims.issuer_key_id!r} was retired at {retired_at} ms and only "
            f"vouches for credentials issued before then; this one says {claims.issued_at} ms. "
            "Issue it again with the current key (`sdlcflow keys issue`)",
        )


def _check_window(claims: CredentialClaims, at_ms: int, leeway_ms: int) -> None:
    if at_ms >= claims.expires_at + leeway_ms:
        raise CredentialRejected(
            RejectReason.EXPIRED,
            f"expired at {claims.expires_at} ms, checked at {at_ms} ms; ask ops for a new one",
        )
    if at_ms + leeway_ms < claims.issued_at:
        raise CredentialRejected(
            RejectReason.NOT_YET_VALID,
            f"issued for {claims.issued_at} ms, checked at {at_ms} ms; check the clocks",
        )


def check_revocation(
    claims: CredentialClaims,
    revoked_credentials: Collection[str],
    revoked_actors: Mapping[str, int] | None,
) -> None:
    """Raise CredentialRejected(REVOKED) if the credential id, or its actor before its issue
    time, is on the revocation list."""
    if claims.credential_id in revoked_credentials:
        raise CredentialRejected(
            RejectReason.REVOKED, f"credential {claims.credential_id!r} was revoked"
        )
    revoked_at = (revoked_actors or {}).get(claims.subject)
    if revoked_at is not None and claims.issued_at <= revoked_at:
        raise CredentialRejected(
            RejectReason.REVOKED,
            f"actor {claims.subject!r} had its credentials revoked at {revoked_at} ms; "
            "this one was issued before that",
        )
