"""Agent identity: credentials checked up front, every event signed and verifiable."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sdlcflow.agents import (
    AgentDefinitionError,
    AgentIdentity,
    IdentityError,
    TaskContract,
    TaskResult,
    Worker,
    agent,
)
from sdlcflow.core.events import Actor, ActorKind, Envelope, LeaseRequested
from sdlcflow.identity import (
    KeyPair,
    SignatureRejected,
    generate_key_pair,
    save_private_key,
    verify_credential,
    verify_event,
)

TokenFactory = Callable[..., str]


@agent("lint")
def lint(task: TaskContract) -> TaskResult:
    return TaskResult()


def envelope() -> Envelope:
    return Envelope(
        event_id="e1",
        type="LeaseRequested",
        occurred_at=1,
        repo="acme/login",
        change_id="c1",
        task_id="c1/lint",
        trace_id="1" * 32,
        causation_id="o1",
        actor=Actor(ActorKind.AGENT, "agent-lint-1"),
    )


class TestAgentIdentity:
    """An identity knows its actor id and signs envelopes with its credential attached."""

    def test_signed_event_verifies_and_carries_the_credential(
        self, identity: AgentIdentity, agent_key: KeyPair, issuer: KeyPair
    ) -> None:
        payload = LeaseRequested("lint")
        signed = identity.sign(envelope(), payload)
        assert signed.credential == identity.credential
        assert signed.signature is not None
        verify_event(signed, payload, signed.signature, agent_key.public_key)
        at = identity.claims.issued_at + 1
        scope = verify_credential(signed.credential, {issuer.key_id: issuer.public_key}, at)
        assert scope.actor_id == identity.actor_id == "agent-lint-1"

    def test_a_changed_payload_no_longer_verifies(
        self, identity: AgentIdentity, agent_key: KeyPair
    ) -> None:
        signed = identity.sign(envelope(), LeaseRequested("lint"))
        assert signed.signature is not None
        with pytest.raises(SignatureRejected):
            verify_event(signed, LeaseRequested("deploy"), signed.signature, agent_key.public_key)

    def test_a_credential_bound_to_another_key_is_refused(self, make_token: TokenFactory) -> None:
        with pytest.raises(IdentityError, match="different one"):
            AgentIdentity(make_token(), key=generate_key_pair("someone-else"))

    def test_a_reviewer_credential_cannot_run_an_agent(
        self, make_token: TokenFactory, agent_key: KeyPair
    ) -> None:
        with pytest.raises(IdentityError, match="not an agent"):
            AgentIdentity(make_token(kind=ActorKind.HUMAN), key=agent_key)

    def test_expired_credential_is_refused_before_any_event_is_sent(
        self, make_token: TokenFactory, agent_key: KeyPair
    ) -> None:
        token = make_token(issued_at=1_000, lifetime_ms=1_000)
        with pytest.raises(IdentityError, match="expired"):
            AgentIdentity(token, key=agent_key).check(["lint"], now_ms=5_000)

    def test_capabilities_outside_the_credential_are_named(self, identity: AgentIdentity) -> None:
        with pytest.raises(IdentityError, match=r"not \['deploy'\]"):
            identity.check(["lint", "deploy"], now_ms=identity.claims.issued_at)

    def test_from_env_names_what_is_missing(self) -> None:
        with pytest.raises(IdentityError, match="SDLCFLOW_AGENT_KEY not set"):
            AgentIdentity.from_env({"SDLCFLOW_AGENT_CREDENTIAL": "sdlc1.x.y"})

    def test_from_env_reads_a_credential_file_and_picks_up_renewals(
        self, tmp_path: Path, make_token: TokenFactory, agent_key: KeyPair
    ) -> None:
        key_file, token_file = tmp_path / "agent.pem", tmp_path / "agent.token"
        save_private_key(agent_key, key_file)
        token_file.write_text(make_token(issued_at=1_000) + "\n")
        env = {"SDLCFLOW_AGENT_CREDENTIAL": str(token_file), "SDLCFLOW_AGENT_KEY": str(key_file)}
        loaded = AgentIdentity.from_env(env)
        assert loaded.claims.issued_at == 1_000
        renewed = make_token(issued_at=2_000)
        token_file.write_text(renewed)
        os.utime(token_file, ns=(10**18, 10**18))
        assert loaded.credential == renewed


class TestWorkerArguments:
    """Bad Worker set-ups fail at construction, naming the fix, before touching Kafka."""

    def test_a_bare_function_instead_of_a_list(self, identity: AgentIdentity) -> None:
        with pytest.raises(AgentDefinitionError, match=r"Worker\(\[my_agent\]\)"):
            Worker(lint, identity=identity)  # type: ignore[arg-type]

    def test_two_agents_for_one_capability(self, identity: AgentIdentity) -> None:
        @agent("lint")
        def other(task: TaskContract) -> TaskResult:
            return TaskResult()

        with pytest.raises(AgentDefinitionError, match="one per capability"):
            Worker([lint, other], identity=identity)

    @pytest.mark.parametrize("field", ["concurrency", "grant_timeout_s", "verdict_timeout_s"])
    def test_non_positive_settings(self, identity: AgentIdentity, field: str) -> None:
        with pytest.raises(AgentDefinitionError, match=f"{field} must be > 0"):
            Worker([lint], identity=identity, **{field: 0})

    def test_capability_outside_the_credential(
        self, make_token: TokenFactory, agent_key: KeyPair
    ) -> None:
        ident = AgentIdentity(make_token(capabilities=("deploy",)), key=agent_key)
        with pytest.raises(IdentityError, match="ask ops for a credential that includes them"):
            Worker([lint], identity=ident)

    def test_defaults_derive_the_group_from_the_capabilities(self, identity: AgentIdentity) -> None:
        worker = Worker([lint], identity=identity, concurrency=3)
        assert (worker.group_id, worker.concurrency) == ("sdlcflow-agents-lint", 3)
        assert dataclasses.asdict(worker.stats)["offers"] == 0
