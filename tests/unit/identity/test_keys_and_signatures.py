"""Key files, event signatures, evidence digests and approval signatures."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from sdlcflow.core.events import Actor, ActorKind, Envelope
from sdlcflow.identity.canonical import CanonicalJsonError, canonical_bytes
from sdlcflow.identity.keys import (
    KeyFileError,
    decode_public_key,
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


class TestKeyFiles:
    """Private keys are written 0600, read back intact, and refused when others can read them."""

    def test_saved_key_is_owner_only_and_round_trips(self, tmp_path: Path) -> None:
        pair = generate_key_pair("alice")
        path = tmp_path / "alice.key"
        save_private_key(pair, path)
        assert os.stat(path).st_mode & 0o777 == 0o600
        loaded = load_private_key(path)
        assert loaded.key_id == "alice"
        assert loaded.public_key_b64 == pair.public_key_b64

    def test_group_readable_key_is_refused_with_fix(self, tmp_path: Path) -> None:
        path = tmp_path / "k.key"
        save_private_key(generate_key_pair("k"), path)
        path.chmod(0o640)
        with pytest.raises(KeyFileError, match="chmod 600"):
            load_private_key(path)

    def test_existing_file_is_not_overwritten(self, tmp_path: Path) -> None:
        path = tmp_path / "k.key"
        save_private_key(generate_key_pair("k"), path)
        with pytest.raises(FileExistsError):
            save_private_key(generate_key_pair("k"), path)

    def test_public_key_of_wrong_length_is_refused(self) -> None:
        with pytest.raises(KeyFileError, match="32"):
            decode_public_key("AAAA")

    def test_key_id_with_dot_is_refused(self) -> None:
        with pytest.raises(KeyFileError, match="key id"):
            generate_key_pair("reviewer.alice")


def envelope(**changes: object) -> Envelope:
    base = Envelope(
        event_id="e-1",
        type="TaskSucceeded",
        occurred_at=1_700_000_000_000,
        repo="acme/shop",
        change_id="c-1",
        task_id="t-1",
        trace_id="00-abc-def-01",
        causation_id=None,
        actor=Actor(kind=ActorKind.AGENT, id="lint-1"),
        credential="sdlc1.x.y",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class TestEventSignatures:
    """An event signature covers envelope and payload; any change after signing is detected."""

    def test_signed_event_verifies_with_signature_field_set(self) -> None:
        pair = generate_key_pair("lint-1")
        payload = {"outputs": ["a.py"], "epoch": 3}
        signature = sign_event(envelope(), payload, pair)
        verify_event(envelope(signature=signature), payload, signature, pair.public_key)

    @pytest.mark.parametrize(
        ("env_change", "payload"),
        [
            ({"repo": "acme/payments"}, {"outputs": ["a.py"], "epoch": 3}),
            ({"credential": "sdlc1.other.token"}, {"outputs": ["a.py"], "epoch": 3}),
            ({}, {"outputs": ["a.py"], "epoch": 4}),
        ],
    )
    def test_tampered_event_is_rejected(self, env_change: dict[str, str], payload: object) -> None:
        pair = generate_key_pair("lint-1")
        signature = sign_event(envelope(), {"outputs": ["a.py"], "epoch": 3}, pair)
        with pytest.raises(SignatureRejected, match="does not verify"):
            verify_event(envelope(**env_change), payload, signature, pair.public_key)

    def test_other_key_is_rejected(self) -> None:
        signature = sign_event(envelope(), {}, generate_key_pair("a"))
        with pytest.raises(SignatureRejected):
            verify_event(envelope(), {}, signature, generate_key_pair("a").public_key)

    def test_digest_ignores_key_order_and_tuple_vs_list(self) -> None:
        assert event_digest({"a": 1, "b": (1, 2)}, {}) == event_digest({"b": [1, 2], "a": 1}, {})

    def test_signature_without_key_id_is_rejected(self) -> None:
        with pytest.raises(SignatureRejected, match="key id"):
            verify_event(envelope(), {}, "AAAA", generate_key_pair("a").public_key)

    def test_key_id_relabelled_after_signing_is_rejected(self) -> None:
        pair = generate_key_pair("lint-bot-key")
        signature = sign_event(envelope(), {}, pair)
        relabelled = "mint" + signature.removeprefix("lint")
        with pytest.raises(SignatureRejected, match="does not verify"):
            verify_event(envelope(), {}, relabelled, pair.public_key)

    def test_non_canonical_spelling_of_the_same_signature_is_rejected(self) -> None:
        pair = generate_key_pair("lint-1")
        signature = sign_event(envelope(), {}, pair)
        # 64 bytes take 86 characters: the last one has 4 unused bits, canonically zero
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        respelled = signature[:-1] + alphabet[alphabet.index(signature[-1]) + 1]
        with pytest.raises(SignatureRejected, match="not base64url"):
            verify_event(envelope(), {}, respelled, pair.public_key)


def bundle(**changes: object) -> EvidenceBundle:
    base = {
        "repo": "acme/shop",
        "change_id": "c-1",
        "state": {"head_sha": "abc123", "base_sha": "000111", "lockfile_digest": "sha256:11"},
        "diff": "--- a/auth.py\n+++ b/auth.py\n",
        "test_results": [{"suite": "unit", "status": "passed", "sha": "abc123"}],
        "environment": {"python": "3.11.9", "env_vars": ["DATABASE_URL"]},
        "risk_score": 70,
        "replay_command": "sdlcflow policy eval --input in.json",
    }
    return EvidenceBundle.model_validate(base | changes)


class TestEvidenceDigest:
    """The evidence digest is the same for equal content and changes with any covered field."""

    def test_mapping_and_model_give_same_digest(self) -> None:
        model = bundle()
        assert evidence_digest(model.model_dump(mode="json")) == model.digest()

    def test_digest_is_prefixed_sha256(self) -> None:
        digest = bundle().digest()
        assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64

    def test_moved_head_sha_changes_digest(self) -> None:
        moved = bundle(state={"head_sha": "def456", "base_sha": "000111"})
        assert moved.digest() != bundle().digest()

    def test_unknown_field_is_refused(self) -> None:
        with pytest.raises(ValueError, match="extra"):
            bundle(surprise=1)

    def test_non_finite_float_cannot_be_canonical(self) -> None:
        with pytest.raises(CanonicalJsonError, match="finite"):
            canonical_bytes({"x": float("nan")})

    def test_sets_are_refused(self) -> None:
        with pytest.raises(CanonicalJsonError, match="sort them"):
            canonical_bytes({"x": {1, 2}})

    def test_enums_dataclasses_models_and_tuples_become_plain_json(self) -> None:
        actor = Actor(ActorKind.AGENT, "bot")
        value = {
            ActorKind.HUMAN: (actor, ActorKind.OPS, 1.5, None, True),
            "state": StateRef(head_sha="abc"),
        }
        assert canonical_bytes(value) == (
            b'{"human":[{"id":"bot","kind":"agent"},"ops",1.5,null,true],'
            b'"state":{"artifact_digest":"","base_sha":"","head_sha":"abc","lockfile_digest":""}}'
        )

    def test_foreign_objects_are_refused(self) -> None:
        with pytest.raises(CanonicalJsonError, match="cannot encode object"):
            canonical_bytes({"x": object()})


def statement(**changes: object) -> ApprovalStatement:
    base = ApprovalStatement(
        approval_id="t-approve-1",
        repo="acme/shop",
        change_id="c-1",
        reviewer="alice",
        verdict=Verdict.APPROVE,
        evidence_digest=bundle().digest(),
        signed_at=1_700_000_000_000,
        comment="looked at the auth diff",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class TestApprovalSignatures:
    """An approval verifies only with the reviewer's key, unmodified, over current evidence."""

    def test_valid_approval_verifies(self) -> None:
        alice = generate_key_pair("alice")
        sig = sign_approval(statement(), alice)
        current = bundle().digest()
        verify_approval(statement(), sig, alice.public_key, expected_evidence_digest=current)

    def test_verdict_flipped_after_signing_is_rejected(self) -> None:
        alice = generate_key_pair("alice")
        sig = sign_approval(statement(), alice)
        with pytest.raises(SignatureRejected, match="does not verify"):
            verify_approval(
                statement(verdict=Verdict.REJECT),
                sig,
                alice.public_key,
                expected_evidence_digest=bundle().digest(),
            )

    def test_stale_evidence_is_rejected(self) -> None:
        alice = generate_key_pair("alice")
        sig = sign_approval(statement(), alice)
        current = bundle(state={"head_sha": "def456"}).digest()
        with pytest.raises(SignatureRejected, match="state moved"):
            verify_approval(statement(), sig, alice.public_key, expected_evidence_digest=current)

    def test_wrong_reviewer_key_is_rejected(self) -> None:
        sig = sign_approval(statement(), generate_key_pair("mallory"))
        with pytest.raises(SignatureRejected):
            verify_approval(
                statement(),
                sig,
                generate_key_pair("alice").public_key,
                expected_evidence_digest=bundle().digest(),
            )

    def test_event_signature_cannot_be_replayed_as_approval(self) -> None:
        alice = generate_key_pair("alice")
        sig = sign_event({"x": 1}, {}, alice)
        with pytest.raises(SignatureRejected):
            verify_approval(
                statement(), sig, alice.public_key, expected_evidence_digest=bundle().digest()
            )
