"""Scoped credentials: issue, verify, and every way verification must refuse."""

from __future__ import annotations

import dataclasses

import pytest

from sdlcflow.core.events import ActorKind, ActorScope
from sdlcflow.identity.canonical import canonical_bytes
from sdlcflow.identity.credentials import (
    CredentialClaims,
    CredentialIssueError,
    CredentialRejected,
    RejectReason,
    issue_credential,
    verify_claims,
    verify_credential,
)
from sdlcflow.identity.keys import KeyPair, b64url_decode, b64url_encode, generate_key_pair

T0 = 1_700_000_000_000
HOUR = 3_600_000


def claims_for(issuer: KeyPair, **changes: object) -> CredentialClaims:
    base = CredentialClaims(
        credential_id="cred-1",
        subject="dep-agent-7",
        kind=ActorKind.AGENT,
        capabilities=("dependency-update",),
        repos=("acme/shop",),
        paths=("requirements*.txt", "poetry.lock"),
        environments=(),
        issued_at=T0,
        expires_at=T0 + HOUR,
        issuer_key_id=issuer.key_id,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def ops() -> KeyPair:
    return generate_key_pair("ops-2024-a")


def trusted(*pairs: KeyPair) -> dict[str, object]:
    return {p.key_id: p.public_key for p in pairs}


def rejection(token: str, keys: dict[str, object], at_ms: int, **kw: object) -> RejectReason:
    with pytest.raises(CredentialRejected) as info:
        verify_claims(token, keys, at_ms, **kw)  # type: ignore[arg-type]
    return info.value.reason


class TestVerifyAccepts:
    """A credential signed by a trusted issuer verifies to exactly the scope it was issued for."""

    def test_round_trip_returns_actor_scope(self, ops: KeyPair) -> None:
        claims = claims_for(ops)
        token = issue_credential(claims, ops)
        scope = verify_credential(token, trusted(ops), T0 + 1)  # type: ignore[arg-type]
        assert scope == ActorScope(
            actor_id=claims.subject,
            kind=ActorKind.AGENT,
            capabilities=claims.capabilities,
            repos=claims.repos,
            paths=claims.paths,
            environments=claims.environments,
            expires_at=claims.expires_at,
        )

    def test_actor_key_binding_survives_round_trip(self, ops: KeyPair) -> None:
        agent = generate_key_pair("dep-agent-7")
        claims = claims_for(ops, actor_key=agent.public_key_b64)
        token = issue_credential(claims, ops)
        assert verify_claims(token, trusted(ops), T0) == claims  # type: ignore[arg-type]


class TestVerifyRefuses:
    """Forged, tampered, expired, unknown-issuer and revoked credentials are refused precisely."""

    def test_token_signed_by_untrusted_key_claiming_trusted_kid_is_forged(
        self, ops: KeyPair
    ) -> None:
        impostor = KeyPair(key_id=ops.key_id, private_key=generate_key_pair("x").private_key)
        token = issue_credential(claims_for(ops), impostor)
        assert rejection(token, trusted(ops), T0) is RejectReason.FORGED

    def test_widened_scope_after_signing_is_forged(self, ops: KeyPair) -> None:
        prefix, payload, signature = issue_credential(claims_for(ops), ops).split(".")
        body = claims_for(ops, repos=("acme/shop", "acme/payments")).to_json()
        tampered = f"{prefix}.{b64url_encode(canonical_bytes(body))}.{signature}"
        assert payload != tampered.split(".")[1]
        assert rejection(tampered, trusted(ops), T0) is RejectReason.FORGED

    def test_flipped_signature_byte_is_forged(self, ops: KeyPair) -> None:
        prefix, payload, signature = issue_credential(claims_for(ops), ops).split(".")
        raw = bytearray(b64url_decode(signature))
        raw[0] ^= 1
        token = f"{prefix}.{payload}.{b64url_encode(bytes(raw))}"
        assert rejection(token, trusted(ops), T0) is RejectReason.FORGED

    def test_expired_at_exactly_expires_at(self, ops: KeyPair) -> None:
        token = issue_credential(claims_for(ops), ops)
        assert rejection(token, trusted(ops), T0 + HOUR) is RejectReason.EXPIRED
        verify_claims(token, trusted(ops), T0 + HOUR - 1)  # type: ignore[arg-type]

    def test_leeway_tolerates_small_clock_skew(self, ops: KeyPair) -> None:
        token = issue_credential(claims_for(ops), ops)
        claims = verify_claims(token, trusted(ops), T0 + HOUR + 5, leeway_ms=10)  # type: ignore[arg-type]
        assert claims.subject == "dep-agent-7"

    def test_before_issued_at_is_not_yet_valid(self, ops: KeyPair) -> None:
        token = issue_credential(claims_for(ops), ops)
        assert rejection(token, trusted(ops), T0 - 1) is RejectReason.NOT_YET_VALID

    def test_wrong_issuer_is_unknown_issuer(self, ops: KeyPair) -> None:
        other = generate_key_pair("ops-other")
        token = issue_credential(claims_for(other), other)
        assert rejection(token, trusted(ops), T0) is RejectReason.UNKNOWN_ISSUER

    def test_revoked_credential_id(self, ops: KeyPair) -> None:
        token = issue_credential(claims_for(ops), ops)
        reason = rejection(token, trusted(ops), T0, revoked_credentials={"cred-1"})
        assert reason is RejectReason.REVOKED

    def test_actor_revocation_covers_earlier_credentials_only(self, ops: KeyPair) -> None:
        old = issue_credential(claims_for(ops), ops)
        new = issue_credential(
            claims_for(ops, credential_id="cred-2", issued_at=T0 + 10, expires_at=T0 + HOUR), ops
        )
        revoked = {"dep-agent-7": T0 + 5}
        assert rejection(old, trusted(ops), T0 + 20, revoked_actors=revoked) is RejectReason.REVOKED
        claims = verify_claims(new, trusted(ops), T0 + 20, revoked_actors=revoked)  # type: ignore[arg-type]
        assert claims.credential_id == "cred-2"

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "sdlc1",
            "sdlc1.a.b.c",
            "jwt.abc.def",
            "sdlc1.!!!.AAAA",
            "sdlc1.e30.AAAA",
            "sdlc1.e30.*",
        ],
    )
    def test_garbage_is_malformed(self, ops: KeyPair, token: str) -> None:
        assert rejection(token, trusted(ops), T0) is RejectReason.MALFORMED


class TestKeyRotation:
    """Several issuer keys are trusted by id, so credentials from old and new keys both verify."""

    def test_old_and_new_issuer_keys_both_verify_until_old_is_retired(self) -> None:
        old, new = generate_key_pair("ops-2024-a"), generate_key_pair("ops-2024-b")
        old_token = issue_credential(claims_for(old), old)
        new_token = issue_credential(claims_for(new, credential_id="cred-2"), new)
        both = trusted(old, new)
        assert verify_claims(old_token, both, T0).issuer_key_id == "ops-2024-a"  # type: ignore[arg-type]
        assert verify_claims(new_token, both, T0).issuer_key_id == "ops-2024-b"  # type: ignore[arg-type]
        assert rejection(old_token, trusted(new), T0) is RejectReason.UNKNOWN_ISSUER


class TestIssue:
    """The issuer refuses credentials that are long-lived, empty or signed by the wrong key."""

    def test_lifetime_above_maximum_is_refused(self, ops: KeyPair) -> None:
        with pytest.raises(CredentialIssueError, match="exceeds the maximum"):
            issue_credential(claims_for(ops, expires_at=T0 + 25 * HOUR), ops)

    def test_expiry_before_issue_is_refused(self, ops: KeyPair) -> None:
        with pytest.raises(CredentialIssueError, match="after issued_at"):
            issue_credential(claims_for(ops, expires_at=T0), ops)

    def test_no_capabilities_is_refused(self, ops: KeyPair) -> None:
        with pytest.raises(CredentialIssueError, match="capability"):
            issue_credential(claims_for(ops, capabilities=()), ops)

    def test_claims_naming_another_issuer_key_are_refused(self, ops: KeyPair) -> None:
        with pytest.raises(CredentialIssueError, match="signing key"):
            issue_credential(claims_for(ops, issuer_key_id="someone-else"), ops)
