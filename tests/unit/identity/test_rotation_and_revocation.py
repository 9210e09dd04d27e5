"""Issuer key rotation (old keys drain) and the revocation list, as pure functions and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdlcflow.core.events import ActorKind
from sdlcflow.identity.credentials import (
    DEFAULT_MAX_TTL_MS,
    CredentialClaims,
    CredentialRejected,
    RejectReason,
    issue_credential,
    verify_claims,
)
from sdlcflow.identity.issuers import (
    IssuerEntry,
    IssuersFileError,
    parse_entries,
    prune,
    read_entries,
    ring_of,
    rotate,
    write_entries,
)
from sdlcflow.identity.keys import KeyPair, generate_key_pair
from sdlcflow.identity.revocation import (
    RevocationFileError,
    RevocationList,
    parse_revocations,
    read_revocations,
    write_revocations,
)

T0 = 1_700_000_000_000
HOUR = 3_600_000


def token(issuer: KeyPair, issued_at: int, ttl: int = HOUR, cred: str = "cred-1") -> str:
    claims = CredentialClaims(
        credential_id=cred,
        subject="lint-bot",
        kind=ActorKind.AGENT,
        capabilities=("lint",),
        repos=("acme/*",),
        paths=("*",),
        environments=(),
        issued_at=issued_at,
        expires_at=issued_at + ttl,
        issuer_key_id=issuer.key_id,
    )
    return issue_credential(claims, issuer, max_ttl_ms=10 * DEFAULT_MAX_TTL_MS)


class TestRetiredIssuerKeys:
    """A retired issuer key vouches for what it signed before retirement, never after."""

    def test_credential_signed_before_retirement_still_verifies(self) -> None:
        old = generate_key_pair("ops-old")
        claims = verify_claims(
            token(old, T0), {"ops-old": old.public_key}, T0 + 1, retired_keys={"ops-old": T0 + 5}
        )
        assert claims.subject == "lint-bot"

    def test_credential_claiming_a_later_issue_time_is_refused(self) -> None:
        old = generate_key_pair("ops-old")
        with pytest.raises(CredentialRejected) as info:
            verify_claims(
                token(old, T0 + 10),
                {"ops-old": old.public_key},
                T0 + 11,
                retired_keys={"ops-old": T0 + 5},
            )
        assert info.value.reason is RejectReason.RETIRED_ISSUER
        assert "keys issue" in str(info.value)

    def test_backdated_credential_outliving_the_drain_window_is_refused(self) -> None:
        old = generate_key_pair("ops-old")
        long_lived = token(old, T0, ttl=DEFAULT_MAX_TTL_MS + HOUR)
        with pytest.raises(CredentialRejected) as info:
            verify_claims(
                long_lived, {"ops-old": old.public_key}, T0 + 1, retired_keys={"ops-old": T0}
            )
        assert info.value.reason is RejectReason.RETIRED_ISSUER


class TestIssuersFile:
    """The issuers file accepts plain keys and retired entries and names what is wrong."""

    def test_plain_and_retired_entries_parse(self) -> None:
        a, b = generate_key_pair("a"), generate_key_pair("b")
        text = json.dumps(
            {"a": a.public_key_b64, "b": {"public_key": b.public_key_b64, "retired_at": T0}}
        )
        ring = ring_of(parse_entries(text, "f.json"), "f.json")
        assert set(ring.keys) == {"a", "b"}
        assert ring.retired_at == {"b": T0}

    @pytest.mark.parametrize(
        "text", ["[]", "{nope", '{"a": 1}', '{"a": {"public_key": "x", "retired_at": "soon"}}']
    )
    def test_malformed_file_is_refused_with_the_file_name(self, text: str) -> None:
        with pytest.raises(IssuersFileError, match=r"f\.json"):
            parse_entries(text, "f.json")

    def test_bad_public_key_names_the_key_id(self) -> None:
        with pytest.raises(IssuersFileError, match="'a'"):
            ring_of(parse_entries('{"a": "AAAA"}', "f.json"), "f.json")


class TestRotate:
    """Rotation trusts the new key, retires the active ones and prunes fully drained keys."""

    def test_rotation_retires_active_keys_and_keeps_old_retirements(self) -> None:
        new = generate_key_pair("ops-3")
        entries = {"ops-1": IssuerEntry("k1", T0), "ops-2": IssuerEntry("k2")}
        rotated = rotate(entries, "ops-3", new.public_key_b64, T0 + HOUR)
        assert rotated["ops-1"].retired_at == T0
        assert rotated["ops-2"].retired_at == T0 + HOUR
        assert rotated["ops-3"].retired_at is None

    def test_an_id_already_trusted_is_refused(self) -> None:
        key = generate_key_pair("ops-1")
        with pytest.raises(IssuersFileError, match="already trusted"):
            rotate({"ops-1": IssuerEntry(key.public_key_b64)}, "ops-1", key.public_key_b64, T0)

    def test_prune_drops_keys_retired_longer_than_a_credential_lifetime(self) -> None:
        entries = {"old": IssuerEntry("k", T0), "new": IssuerEntry("k2")}
        assert set(prune(entries, T0 + DEFAULT_MAX_TTL_MS - 1)) == {"old", "new"}
        assert set(prune(entries, T0 + DEFAULT_MAX_TTL_MS)) == {"new"}

    def test_file_round_trips(self, tmp_path: Path) -> None:
        key = generate_key_pair("ops-1")
        path = tmp_path / "issuers.json"
        assert read_entries(path) == {}
        entries = {"ops-1": IssuerEntry(key.public_key_b64, T0)}
        write_entries(path, entries)
        assert read_entries(path) == entries


class TestRevocationList:
    """Revocations by credential id and by actor, in a file ops edit with `keys revoke`."""

    def test_revoked_credential_is_refused_by_verify(self) -> None:
        ops = generate_key_pair("ops")
        revoked = RevocationList().revoke_credential("cred-1", T0)
        with pytest.raises(CredentialRejected) as info:
            verify_claims(
                token(ops, T0),
                {"ops": ops.public_key},
                T0 + 1,
                revoked_credentials=revoked.credentials,
            )
        assert info.value.reason is RejectReason.REVOKED

    def test_file_round_trips_and_missing_file_is_empty(self, tmp_path: Path) -> None:
        path = tmp_path / "revoked.json"
        assert read_revocations(path) == RevocationList()
        revocations = RevocationList().revoke_credential("c", T0).revoke_actor("a", T0 + 1)
        write_revocations(path, revocations)
        assert read_revocations(path) == revocations

    def test_prune_drops_entries_whose_credentials_have_all_expired(self) -> None:
        revocations = RevocationList().revoke_credential("c", T0).revoke_actor("a", T0 + HOUR)
        pruned = revocations.prune(T0 + DEFAULT_MAX_TTL_MS)
        assert dict(pruned.credentials) == {} and dict(pruned.actors) == {"a": T0 + HOUR}

    @pytest.mark.parametrize(
        "text", ["[]", "{", '{"credentials": {"c": "x"}}', '{"other": {}}', '{"actors": []}']
    )
    def test_malformed_list_is_refused_with_the_file_name(self, text: str) -> None:
        with pytest.raises(RevocationFileError, match=r"r\.json"):
            parse_revocations(text, "r.json")
