"""Who the coordinator believes: trusted issuer keys, credential and signature checks per input.

The trusted issuers file (SDLCFLOW_TRUSTED_ISSUERS, default `<data dir>/trusted-issuers.json`)
maps an issuer key id to its Ed25519 public key (see `sdlcflow.identity.issuers`): several keys
may be trusted at once while keys rotate, a retired key only vouches for credentials it signed
before its retirement. The revocation list (SDLCFLOW_REVOKED_CREDENTIALS, default
`revoked-credentials.json` beside the issuers file; see `sdlcflow.identity.revocation`) names
revoked credential ids and actors. Both files are re-read when they change, without a restart;
an admitted CredentialRevoked event from ops takes effect at once as well.

What an input must carry (invariant 8):
- agents, humans and ops: a credential (`Envelope.credential`) signed by a trusted issuer, for
  the envelope's actor id and kind, valid at the event's time, not revoked, and an event
  signature made with the actor key the credential binds;
- producers: nothing, but a credential, when present, is checked like any other;
- the coordinator: only Ticks on `sdlc.ticks` (the shell's own timer), never on other topics.
Any input dated further in the future than the allowed clock skew is refused, so nobody can
push the coordinator's clock forward and expire other holders' leases.
"""

from __future__ import annotations

import logging
import os
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
from sdlcflow.identity.credentials import check_revocation
from sdlcflow.identity.issuers import IssuerRing, IssuersFileError, parse_entries, ring_of
from sdlcflow.identity.keys import VerifyKey
from sdlcflow.identity.revocation import RevocationFileError, RevocationList, parse_revocations

log = logging.getLogger(__name__)

# Actor kinds whose inputs must carry a credential and a signature.
CREDENTIALED_KINDS = frozenset({ActorKind.AGENT, ActorKind.HUMAN, ActorKind.OPS})
# Verified claims kept per token, so a long-lived agent pays for one issuer check only.
CLAIMS_CACHE_SIZE = 10_000
# How often (ms of event time) the files' modification times are looked at.
RELOAD_EVERY_MS = 5_000
REVOCATIONS_ENV = "SDLCFLOW_REVOKED_CREDENTIALS"
REVOCATIONS_FILE = "revoked-credentials.json"
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
    return dict(_parse_ring(text, source).keys)


def _parse_ring(text: str, source: str) -> IssuerRing:
    try:
        return ring_of(parse_entries(text, source), source)
    except IssuersFileError as exc:
        raise TrustError(str(exc)) from None


def default_revocations_file(issuers_file: Path) -> Path:
    """SDLCFLOW_REVOKED_CREDENTIALS, else `revoked-credentials.json` beside the issuers file."""
    configured = os.environ.get(REVOCATIONS_ENV, "").strip()
    return Path(configured) if configured else issuers_file.with_name(REVOCATIONS_FILE)


class _WatchedFile:
    """A file looked at again whenever it is replaced or modified."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None  # None: never looked; (-1, ..): missing

    def poll(self) -> tuple[bool, str | None]:
        """(changed since the last poll, the text or None when the file does not exist)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            changed, self._stamp = self._stamp != _MISSING, _MISSING
            return changed, None
        # inode too: an atomic replace within the clock's granularity still counts as a change
        stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        if stamp == self._stamp:
            return False, None
        self._stamp = stamp
        return True, self.path.read_bytes().decode("utf-8", "replace")


_MISSING = (-1, -1, -1)


class TrustedIssuers:
    """The issuer keys and the revocation list, re-read when their files change (rotation and
    revocation without restart).

    A missing issuers file means no issuer is trusted: producers still work, every credential is
    refused as from an unknown issuer, and a warning says where the file was expected.
    """

    def __init__(self, path: Path, revocations: Path | None = None) -> None:
        self.path = path
        self._issuers_file: _WatchedFile | None = _WatchedFile(path)
        self._revocations_file: _WatchedFile | None = _WatchedFile(
            revocations or default_revocations_file(path)
        )
        self._ring = IssuerRing({}, {})
        self.revocations = RevocationList()
        self._checked_at: int | None = None
        self.version = 0
        self.reload()

    @classmethod
    def of(
        cls,
        keys: Mapping[str, Ed25519PublicKey],
        *,
        retired_at: Mapping[str, int] | None = None,
        revocations: RevocationList | None = None,
    ) -> TrustedIssuers:
        """Fixed keys and revocations, no files (tests and benchmarks)."""
        issuers = cls.__new__(cls)
        issuers.path = Path("/nonexistent")
        issuers._issuers_file = issuers._revocations_file = None
        issuers._ring = IssuerRing(dict(keys), dict(retired_at or {}))
        issuers.revocations = revocations or RevocationList()
        issuers._checked_at = None
        issuers.version = 0
        return issuers

    @property
    def retired_at(self) -> Mapping[str, int]:
        return self._ring.retired_at

    def reload(self) -> None:
        """Re-read whichever file changed; raises TrustError on a file that cannot be used."""
        self._reload_issuers()
        self._reload_revocations()

    def _reload_issuers(self) -> None:
        if self._issuers_file is None:
            return
        changed, text = self._issuers_file.poll()
        if not changed:
            return
        if text is None:
            log.warning(
                "no trusted issuers file at %s: every credential will be refused; "
                "write {key id: public key} there or set SDLCFLOW_TRUSTED_ISSUERS",
                self.path,
            )
            self._ring = IssuerRing({}, {})
        else:
            self._ring = _parse_ring(text, str(self.path))
            log.info(
                "trusting issuer keys %s (retired: %s) from %s",
                sorted(self._ring.keys),
                sorted(self._ring.retired_at),
                self.path,
            )
        self.version += 1

    def _reload_revocations(self) -> None:
        if self._revocations_file is None:
            return
        changed, text = self._revocations_file.poll()
        if not changed:
            return
        source = str(self._revocations_file.path)
        try:
            self.revocations = parse_revocations(text, source) if text else RevocationList()
        except RevocationFileError as exc:
            raise TrustError(str(exc)) from None
        log.info(
            "revocation list %s: %d credentials, %d actors",
            source,
            len(self.revocations.credentials),
            len(self.revocations.actors),
        )

    def keys(self, now_ms: int) -> Mapping[str, Ed25519PublicKey]:
        if self._checked_at is None or now_ms - self._checked_at >= RELOAD_EVERY_MS:
            self._checked_at = now_ms
            try:
                self.reload()
            except TrustError:
                log.exception("kept the previous trusted issuers and revocations; fix the file")
        return self._ring.keys


_DEAD_LETTER_REASONS: dict[CredentialReason, str] = {
    CredentialReason.MALFORMED: "credential-malformed",
    CredentialReason.UNKNOWN_ISSUER: "credential-unknown-issuer",
    CredentialReason.FORGED: "credential-forged",
    CredentialReason.EXPIRED: "credential-expired",
    CredentialReason.NOT_YET_VALID: "credential-not-yet-valid",
    CredentialReason.REVOKED: "credential-revoked",
    CredentialReason.RETIRED_ISSUER: "credential-issuer-retired",
}
_CORE_REASONS: dict[CredentialReason, InputRejection] = {
    CredentialReason.EXPIRED: InputRejection.SCOPE_EXPIRED,
    CredentialReason.REVOKED: InputRejection.CREDENTIAL_REVOKED,
}


def _refusal_of(exc: CredentialRejected) -> Refusal:
    core_reason = _CORE_REASONS.get(exc.reason, InputRejection.MISSING_SCOPE)
    return Refusal(core_reason, _DEAD_LETTER_REASONS[exc.reason], str(exc))


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
        self._actor_keys: dict[str, VerifyKey] = {}
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
            return _refusal_of(exc)
        refusal = self._check_claims(event, claims, now_ms)
        if refusal is not None:
            return refusal
        revocations = self.issuers.revocations
        try:
            check_revocation(claims, revocations.credentials, revocations.actors)
        except CredentialRejected as exc:
            return _refusal_of(exc)
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
            claims = verify_claims(
                token, keys, 0, retired_keys=self.issuers.retired_at, leeway_ms=_NO_WINDOW
            )
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

    def _actor_key(self, claims: CredentialClaims) -> VerifyKey:
        assert claims.actor_key is not None
        key = self._actor_keys.get(claims.actor_key)
        if key is None:
            key = VerifyKey.of(decode_public_key(claims.actor_key))
            if len(self._actor_keys) >= CLAIMS_CACHE_SIZE:
                self._actor_keys.clear()
            self._actor_keys[claims.actor_key] = key
        return key
