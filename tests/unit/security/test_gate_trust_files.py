"""The coordinator's credential gate follows the issuers file (rotation) and the revocation
list while running, and refuses with a precise, recorded reason."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sdlcflow.core.events import Event, EventRejected, InputRejection, LeaseRequested
from sdlcflow.identity.commands import keys
from sdlcflow.identity.issuers import IssuerEntry, read_entries, rotate, write_entries
from sdlcflow.identity.keys import KeyPair, generate_key_pair, load_private_key
from sdlcflow.identity.revocation import RevocationList, write_revocations
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.engine import CoordinatorEngine, Inbound
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.testing import SignedActor, TestIssuer
from sdlcflow.processors.trust import RELOAD_EVERY_MS, CredentialGate, Refusal, TrustedIssuers
from sdlcflow.streams.deadletter import MessageDeadLettered
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR, DEAD_LETTER
from sdlcflow.streams.wire import EventCodec

T0 = 1_700_000_000_000
REPO = "acme/web"


def _actor(issuer: KeyPair, name: str = "lint-bot", at: int = T0) -> SignedActor:
    return TestIssuer(issuer).actor(name, capabilities=("lint",), issued_at=at)


def _request(actor: SignedActor, at: int) -> Event:
    return actor.event(LeaseRequested("lint"), repo=REPO, at=at, change_id="c", task_id="c/lint")


def _credential_id(actor: SignedActor) -> str:
    from sdlcflow.agents._identity import read_claims

    return read_claims(actor.credential).credential_id


def _gate(tmp_path: Path, issuer: KeyPair) -> tuple[CredentialGate, Path, Path]:
    issuers_file, revoked_file = tmp_path / "issuers.json", tmp_path / "revoked.json"
    write_entries(issuers_file, {issuer.key_id: IssuerEntry(issuer.public_key_b64)})
    return CredentialGate(TrustedIssuers(issuers_file, revoked_file)), issuers_file, revoked_file


class TestRevocationListAtTheGate:
    """A credential added to the revocation list is refused from the gate's next look on."""

    def test_revoked_credential_is_refused_and_recorded_without_restart(
        self, tmp_path: Path
    ) -> None:
        ops = generate_key_pair("ops-1")
        gate, _, revoked_file = _gate(tmp_path, ops)
        lint = _actor(ops)
        assert not isinstance(gate.admit(_request(lint, T0 + 1), T0 + 1), Refusal)
        write_revocations(
            revoked_file, RevocationList().revoke_credential(_credential_id(lint), T0)
        )
        now = T0 + 1 + RELOAD_EVERY_MS
        refusal = gate.admit(_request(lint, now), now)
        assert isinstance(refusal, Refusal)
        assert refusal.reason is InputRejection.CREDENTIAL_REVOKED
        assert refusal.dead_letter_reason == "credential-revoked" and refusal.record
        assert _credential_id(lint) in refusal.detail

    def test_actor_revocation_spares_credentials_issued_afterwards(self, tmp_path: Path) -> None:
        ops = generate_key_pair("ops-1")
        gate, _, revoked_file = _gate(tmp_path, ops)
        write_revocations(revoked_file, RevocationList().revoke_actor("lint-bot", T0 + 10))
        gate.issuers.reload()
        old, fresh = _actor(ops, at=T0), _actor(ops, at=T0 + 11)
        assert isinstance(gate.admit(_request(old, T0 + 20), T0 + 20), Refusal)
        assert not isinstance(gate.admit(_request(fresh, T0 + 20), T0 + 20), Refusal)

    def test_a_broken_list_keeps_the_previous_one(self, tmp_path: Path) -> None:
        ops = generate_key_pair("ops-1")
        gate, _, revoked_file = _gate(tmp_path, ops)
        lint = _actor(ops)
        write_revocations(
            revoked_file, RevocationList().revoke_credential(_credential_id(lint), T0)
        )
        gate.issuers.reload()
        revoked_file.write_text("{ not json", "utf-8")
        now = T0 + RELOAD_EVERY_MS
        assert isinstance(gate.admit(_request(lint, now), now), Refusal)


class TestRotationAtTheGate:
    """After rotation the new key is trusted and the old one drains: what it signed before
    still counts until expiry, what it claims to sign later is refused."""

    def test_old_credentials_drain_and_new_key_is_trusted(self, tmp_path: Path) -> None:
        old = generate_key_pair("ops-1")
        gate, issuers_file, _ = _gate(tmp_path, old)
        before = _actor(old, at=T0)
        new = generate_key_pair("ops-2")
        write_entries(
            issuers_file, rotate(read_entries(issuers_file), "ops-2", new.public_key_b64, T0 + 100)
        )
        now = T0 + RELOAD_EVERY_MS
        assert not isinstance(gate.admit(_request(before, now), now), Refusal)
        assert not isinstance(gate.admit(_request(_actor(new, "b", T0 + 200), now), now), Refusal)
        minted_later = _actor(old, "c", at=T0 + 200)
        refusal = gate.admit(_request(minted_later, now), now)
        assert isinstance(refusal, Refusal)
        assert refusal.dead_letter_reason == "credential-issuer-retired"

    def test_expired_credential_is_refused_with_its_expiry(self, tmp_path: Path) -> None:
        ops = generate_key_pair("ops-1")
        gate, _, _ = _gate(tmp_path, ops)
        lint = _actor(ops)
        late = T0 + 2 * 3_600_000
        refusal = gate.admit(_request(lint, late), late)
        assert isinstance(refusal, Refusal)
        assert refusal.reason is InputRejection.SCOPE_EXPIRED
        assert "expired at" in refusal.detail and "new credential" in refusal.detail


class TestKeysCommands:
    """`keys rotate` and `keys revoke` write the files the gate reads."""

    def test_rotate_then_revoke(self, tmp_path: Path) -> None:
        runner = CliRunner()
        issuers_file, revoked_file = tmp_path / "issuers.json", tmp_path / "revoked.json"
        first = runner.invoke(
            keys,
            [
                "rotate",
                "--issuers",
                str(issuers_file),
                "--new-id",
                "ops-1",
                "--out",
                str(tmp_path / "k1"),
                "--json",
            ],
        )
        assert first.exit_code == 0, first.output
        second = runner.invoke(
            keys,
            [
                "rotate",
                "--issuers",
                str(issuers_file),
                "--new-id",
                "ops-2",
                "--out",
                str(tmp_path / "k2"),
                "--json",
            ],
        )
        assert json.loads(second.output) | {"private_key_file": ""} == {
            "active": "ops-2",
            "draining": ["ops-1"],
            "dropped": [],
            "private_key_file": "",
        }
        entries = read_entries(issuers_file)
        assert entries["ops-1"].retired_at is not None and entries["ops-2"].retired_at is None
        assert load_private_key(tmp_path / "k2").public_key_b64 == entries["ops-2"].public_key
        again = runner.invoke(
            keys,
            [
                "rotate",
                "--issuers",
                str(issuers_file),
                "--new-id",
                "ops-2",
                "--out",
                str(tmp_path / "k3"),
            ],
        )
        assert again.exit_code != 0 and "already trusted" in again.output
        revoked = runner.invoke(
            keys,
            [
                "revoke",
                "--list",
                str(revoked_file),
                "--credential",
                "cred-9",
                "--actor",
                "bot",
                "--json",
            ],
        )
        body = json.loads(revoked.output)
        assert set(body["credentials"]) == {"cred-9"} and set(body["actors"]) == {"bot"}

    def test_revoke_without_a_target_is_a_usage_error(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(keys, ["revoke", "--list", str(tmp_path / "r.json")])
        assert result.exit_code == 2 and "--credential or --actor" in result.output


class TestRevokedAtTheEngine:
    """Through the coordinator engine, a revoked credential's event is dead-lettered and
    recorded on the decision log as EventRejected CREDENTIAL_REVOKED."""

    def test_revoked_lease_request_is_dead_lettered_and_recorded(self) -> None:
        ops = generate_key_pair("ops-1")
        lint = _actor(ops)
        revoked = RevocationList().revoke_credential(_credential_id(lint), T0)
        codec = EventCodec()
        engine = CoordinatorEngine(
            core_config(ProcessorConfig.from_env()),
            CredentialGate(TrustedIssuers.of({ops.key_id: ops.public_key}, revocations=revoked)),
            codec,
            group="revocation-test",
            clock=lambda: T0 + 10,
        )
        record = Inbound(AGENT_EVENTS, 0, 1, REPO.encode(), codec.encode(_request(lint, T0 + 5)))
        result = engine.process([record], lambda _r, _p: None, lambda _p: frozenset())
        by_topic = {r.topic: codec.decode(r.value) for r in result.outbound}
        letter = by_topic[DEAD_LETTER].payload
        assert isinstance(letter, MessageDeadLettered) and letter.reason == "credential-revoked"
        rejected = by_topic[COORDINATOR].payload
        assert isinstance(rejected, EventRejected)
        assert rejected.reason is InputRejection.CREDENTIAL_REVOKED
