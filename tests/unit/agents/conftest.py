"""Shared fixtures for the agent SDK's unit tests: an ops issuer and an agent key pair."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sdlcflow.agents import AgentIdentity
from sdlcflow.core.events import ActorKind
from sdlcflow.identity import CredentialClaims, KeyPair, generate_key_pair, issue_credential


@pytest.fixture
def issuer() -> KeyPair:
    return generate_key_pair("ops-test")


@pytest.fixture
def agent_key() -> KeyPair:
    return generate_key_pair("agent-lint-1")


TokenFactory = Callable[..., str]


def _make_token(
    issuer: KeyPair,
    agent_key: KeyPair | None,
    *,
    capabilities: tuple[str, ...] = ("lint",),
    lifetime_ms: int = 3_600_000,
    issued_at: int | None = None,
    kind: ActorKind = ActorKind.AGENT,
) -> str:
    now = issued_at if issued_at is not None else int(time.time() * 1000)
    claims = CredentialClaims(
        credential_id="cred-1",
        subject="agent-lint-1",
        kind=kind,
        capabilities=capabilities,
        repos=("*",),
        paths=("*",),
        environments=(),
        issued_at=now,
        expires_at=now + lifetime_ms,
        issuer_key_id=issuer.key_id,
        actor_key=None if agent_key is None else agent_key.public_key_b64,
    )
    return issue_credential(claims, issuer)


@pytest.fixture
def make_token(issuer: KeyPair, agent_key: KeyPair) -> TokenFactory:
    """Issue a credential for the test agent (keyword arguments override the claims)."""

    def make(**overrides: Any) -> str:
        return _make_token(issuer, overrides.pop("agent_key", agent_key), **overrides)

    return make


@pytest.fixture
def identity(make_token: TokenFactory, agent_key: KeyPair) -> AgentIdentity:
    return AgentIdentity(make_token(), key=agent_key)
