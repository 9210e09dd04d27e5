"""Who the coordinator believes: trusted issuer keys, credential and signature checks per input.

The trusted issuers file (SDLCFLOW_TRUSTED_ISSUERS, default `<data dir>/trusted-issuers.json`)
is a JSON object mapping an issuer key id to its Ed25519 public key in unpadded base64url:

    {"ops-2024-06": "l0T9...", "ops-2024-09": "x7Qa..."}

Several keys may be trusted at once while keys rotate; the file is re-read when it changes.

What an input must carry (invariant 8):
- agents, humans and ops: a credential (`Envelope.credential`) signed by a trusted issuer, for
  the envelope's actor id and kind, valid at the event's time, and an event signature made
  with the actor key the credential binds;
- producers: nothing, but a credential, when present, is checked like any other;
- the coordinator: only Ticks on `sdlc.ticks` (the shell's own timer), never on other topics.
Any input dated further in the future than the allowed clock skew is refused, so nobody can
push the coordinator's clock forward and expire other holders' leases.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sdlcflow.core.events import ActorKind, Event, InputRejection
from sdlcflow.errors import SdlcflowError
from sdlcflow.identity import (
    CredentialClaims,
    CredentialRejected,
    KeyFileError,
    SignatureRejected,
    decode_public_key,
    verify_claims,
    verify_event,
)
from sdlcflow.identity import RejectReason as CredentialReason

log = logging.getLogger(__name__)

# Actor kinds whose inputs must carry a credential and a signature.
CREDENTIALED_KINDS = frozenset({ActorKind.AGENT, ActorKind.HUMAN, ActorKind.OPS})
# Verified claims kept per token, so a long-lived agent pays for one issuer check only.
CLAIMS_CACHE_SIZE = 10_000
# How often (ms of event time) the issuers file's modification time is looked at.
RELOAD_EVERY_MS = 5_000
_NO_WINDOW = 2**62


class TrustError(SdlcflowError):
    """The trusted issuers file cannot be read or holds something that is not a public key."""


@dataclass(frozen=True)
class Refusal:
    """Why an input was not admitted: the core's reason (for EventRejected) and a dead-letter
    reason; `record` is False when the input is refused without an EventRejected decision."""

    reason: InputRejection
    dead_letter_reason: str
    detail: str
    record: bool = True


def parse_trusted_issuers(text: str, source: str) -> dict[str, Ed25519PublicKey]:
    """Parse the issuers file; errors name the file and the entry that is wrong."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise TrustError(f"{source}: not JSON ({exc}); expected {{key id: public key}}") from None
    if not isinstance(body, dict):
        raise TrustError(f"{source}: expected a JSON object {{key id: public key}}")
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, encoded in body.items():
        if not isinstance(encoded, str):
            raise TrustError(f"{source}: key {key_id!r} must be a base64url string")
        try:
            keys[key_id] = decode_public_key(encoded)
        except KeyFileError as exc:
            raise TrustError(f"{source}: key {key_id!r}: {exc}") from None
    return keys


class TrustedIssuers:
    """The issuer keys from a file, re-read when the file changes (key rotation without restart).

    A missing file means no issuer is trusted: producers still work, every credential is refused
    as from an unknown issuer, and a warning says where the file was expected.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._checked_at: int | None = None
        self.version = 0
        self.reload()

    @classmethod
    def of(cls, keys: Mapping[str, Ed25519PublicKey]) -> TrustedIssuers:
        """Fixed keys, no file (tests and benchmarks)."""
        issuers = cls.__new__(cls)
        issuers.path = Path("/nonexistent")
        issuers._mtime = None
        issuers._keys = dict(keys)
        issuers._checked_at = None
        issuers.version = 0
        return issuers

    def reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            if self._keys or self._mtime is None:
                log.warning(
                    "no trusted issuers file at %s: every credential will be refused; "
                    "write {key id: public key} there or set SDLCFLOW_TRUSTED_ISSUERS",
                    self.path,
                )
            if self._keys:
                self.version += 1
            self._keys, self._mtime = {}, -1.0
            return
        if mtime != self._mtime:
            self._keys = parse_trusted_issuers(self.path.read_text("utf-8"), str(self.path))
            self._mtime = mtime
            self.version += 1
            log.info("trusting issuer keys %s from %s", sorted(self._keys), self.path)

    def keys(self, now_ms: int) -> Mapping[str, Ed25519PublicKey]:
        if self._checked_at is None or now_ms - self._checked_at >= RELOAD_EVERY_MS:
            self._checked_at = now_ms
            if self._mtime is not None:
                try:
                    self.reload()
                except TrustError:
                    log.exception("kept the previous trusted issuers; fix %s", self.path)
        return self._keys


_DEAD_LETTER_REASONS: dict[CredentialReason, str] = {
    CredentialReason.MALFORMED: "credential-malformed",
    CredentialReason.UNKNOWN_ISSUER: "credential-unknown-issuer",
    CredentialReason.FORGED: "credential-forged",
    CredentialReason.EXPIRED: "credential-expired",
    CredentialReason.NOT_YET_VALID: "credential-not-yet-valid",
    CredentialReason.REVOKED: "credential-revoked",
}


class CredentialGate:
    """Admits an input with its verified `ActorScope`, or refuses it with a precise reason.

    Args:
        issuers: the trusted issuer keys.
        max_clock_skew_ms: inputs dated later than now + this are refused.
        credential_grace_ms: a credential is refused once now is this far past its expiry,
            even when the event claims an earlier date (limits back-dating by a key holder).
    """

    def __init__(
        self,
        issuers: TrustedIssuers,
        *,
        max_clock_skew_ms: int = 30_000,
        credential_grace_ms: int = 300_000,
    ) -> None:
        self.issuers = issuers
        self.max_clock_skew_ms = max_clock_skew_ms
        self.credential_grace_ms = credential_grace_ms
        self._claims: dict[str, CredentialClaims] = {}
        self._actor_keys: dict[str, Ed25519PublicKey] = {}
        self._issuers_version = issuers.version

    def admit(self, event: Event, now_ms: int, *, from_timer: bool = False) -> Event | Refusal:
        """The event with its scope attached, or why it must not reach the core."""
        envelope = event.envelope
        if envelope.occurred_at > now_ms + self.max_clock_skew_ms:
            return Refusal(
                InputRejection.MISSING_SCOPE,
                "future-dated",
                f"occurred_at {envelope.occurred_at} is more than {self.max_clock_skew_ms} ms "
                f"after the coordinator's clock ({now_ms}); fix the sender's clock",
                record=False,
            )
        kind = envelope.actor.kind
        if kind is ActorKind.COORDINATOR:
            if from_timer and envelope.type == "Tick":
                return event
            return Refusal(
                InputRejection.WRONG_KIND,
                "coordinator-impersonated",
                f"{envelope.type} claims to come from the coordinator, which only sends Ticks "
                "on sdlc.ticks",
            )
        if envelope.credential is None:
            if kind in CREDENTIALED_KINDS:
                return Refusal(
                    InputRejection.MISSING_SCOPE,
                    "credential-missing",
                    f"{kind.value} events need a credential; ask ops to issue one",
                )
            return event
        return self._check_credential(event, envelope.credential, now_ms)

    def _check_credential(self, event: Event, token: str, now_ms: int) -> Event | Refusal:
        envelope = event.envelope
        try:
            claims = self._verified_claims(token, now_ms)
        except CredentialRejected as exc:
            core_reason = (
                InputRejection.SCOPE_EXPIRED
                if exc.reason is CredentialReason.EXPIRED
                else InputRejection.MISSING_SCOPE
            )
            return Refusal(core_reason, _DEAD_LETTER_REASONS[exc.reason], str(exc))
        refusal = self._check_claims(event, claims, now_ms)
        if refusal is not None:
            return refusal
        if envelope.actor.kind in CREDENTIALED_KINDS:
            refusal = self._check_signature(event, claims)
            if refusal is not None:
                return refusal
        return Event(envelope, event.payload, claims.to_scope())

    def _verified_claims(self, token: str, now_ms: int) -> CredentialClaims:
        """Issuer signature checked once per token; the validity window on every call."""
        keys = self.issuers.keys(now_ms)
        if self.issuers.version != self._issuers_version:
            self._claims.clear()  # a key may have been withdrawn: check every token again
            self._issuers_version = self.issuers.version
        claims = self._claims.get(token)
        if claims is None:
            # shape, issuer and signature only: an unbounded leeway disables the window check,
            # which `_check_claims` makes against the event's time on every use
            claims = verify_claims(token, keys, 0, leeway_ms=_NO_WINDOW)
            if len(self._claims) >= CLAIMS_CACHE_SIZE:
                self._claims.clear()
            self._claims[token] = claims
        return claims

    def _check_claims(self, event: Event, claims: CredentialClaims, now_ms: int) -> Refusal | None:
        envelope = event.envelope
        at = envelope.occurred_at
        if at >= claims.expires_at or now_ms >= claims.expires_at + self.credential_grace_ms:
            return Refusal(
                InputRejection.SCOPE_EXPIRED,
                "credential-expired",
                f"credential {claims.credential_id} expired at {claims.expires_at} ms; the event "
                f"is dated {at} ms; ask ops for a new credential",
            )
        if at < claims.issued_at:
            return Refusal(
                InputRejection.MISSING_SCOPE,
                "credential-not-yet-valid",
                f"credential issued at {claims.issued_at} ms, event dated {at} ms",
            )
        if claims.subject != envelope.actor.id:
            return Refusal(
                InputRejection.ACTOR_MISMATCH,
                "credential-actor-mismatch",
                f"credential is for {claims.subject!r}, the event names {envelope.actor.id!r}",
            )
        if claims.kind is not envelope.actor.kind:
            return Refusal(
                InputRejection.WRONG_KIND,
                "credential-kind-mismatch",
                f"credential is for a {claims.kind.value}, the event claims a "
                f"{envelope.actor.kind.value}",
            )
        return None

    def _check_signature(self, event: Event, claims: CredentialClaims) -> Refusal | None:
        envelope = event.envelope
        if claims.actor_key is None:
            return Refusal(
                InputRejection.MISSING_SCOPE,
                "credential-unbound",
                f"credential {claims.credential_id} binds no actor key, so the event's "
                "signature cannot be checked; issue it with the actor's public key",
            )
        if not envelope.signature:
            return Refusal(
                InputRejection.MISSING_SCOPE,
                "signature-missing",
                f"{envelope.actor.kind.value} events must be signed with the actor's key",
            )
        try:
            verify_event(envelope, event.payload, envelope.signature, self._actor_key(claims))
        except (SignatureRejected, KeyFileError) as exc:
            return Refusal(InputRejection.MISSING_SCOPE, "signature-invalid", str(exc))
        return None

    def _actor_key(self, claims: CredentialClaims) -> Ed25519PublicKey:
        assert claims.actor_key is not None
        key = self._actor_keys.get(claims.actor_key)
        if key is None:
            key = decode_public_key(claims.actor_key)
            if len(self._actor_keys) >= CLAIMS_CACHE_SIZE:
                self._actor_keys.clear()
            self._actor_keys[claims.actor_key] = key
        return key
