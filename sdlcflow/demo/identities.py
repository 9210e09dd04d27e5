"""Who acts in the demo: an issuer the coordinator trusts, one credential per agent process and
two human reviewers, all short-lived and scoped to the demo's repository."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.agents import CREDENTIAL_ENV, KEY_ENV
from sdlcflow.core.events import REVIEW_CAPABILITY, ActorKind
from sdlcflow.identity.credentials import CredentialClaims, issue_credential
from sdlcflow.identity.keys import KeyPair, generate_key_pair, save_private_key

CREDENTIAL_TTL_MS = 2 * 60 * 60 * 1000  # long enough for a slow machine, far below the 24 h cap
ENVIRONMENTS = ("staging", "prod")


@dataclass(frozen=True)
class Holder:
    """An actor's id, its private key file and its credential token."""

    actor_id: str
    key_file: Path
    credential: str

    def agent_env(self) -> dict[str, str]:
        """The environment `sdlcflow run agent` reads its identity from."""
        return {CREDENTIAL_ENV: self.credential, KEY_ENV: str(self.key_file)}


@dataclass(frozen=True)
class DemoIdentities:
    issuer_key_id: str
    trusted_issuers: Path
    agents: dict[str, Holder]  # capability -> its agent's identity
    reviewers: tuple[Holder, ...]


def issue_identities(
    root: Path,
    *,
    repo: str,
    capabilities: Sequence[str],
    reviewers: Sequence[str],
    now_ms: int,
) -> DemoIdentities:
    """Keys and credentials under `root`, and the issuers file the coordinator will trust."""
    root.mkdir(parents=True, exist_ok=True)
    issuer = generate_key_pair(f"demo-issuer-{uuid.uuid4().hex[:8]}")
    trusted = root / "trusted-issuers.json"
    trusted.write_text(json.dumps({issuer.key_id: issuer.public_key_b64}))
    agents = {
        capability: _holder(
            root, issuer, f"{capability}-agent", ActorKind.AGENT, (capability,), repo, now_ms
        )
        for capability in capabilities
    }
    humans = tuple(
        _holder(root, issuer, name, ActorKind.HUMAN, (REVIEW_CAPABILITY,), repo, now_ms)
        for name in reviewers
    )
    return DemoIdentities(issuer.key_id, trusted, agents, humans)


def _holder(
    root: Path,
    issuer: KeyPair,
    actor_id: str,
    kind: ActorKind,
    capabilities: tuple[str, ...],
    repo: str,
    now_ms: int,
) -> Holder:
    pair = generate_key_pair(actor_id)
    key_file = root / f"{actor_id}.key"
    save_private_key(pair, key_file)
    claims = CredentialClaims(
        credential_id=str(uuid.uuid4()),
        subject=actor_id,
        kind=kind,
        capabilities=capabilities,
        repos=(repo,),
        paths=("*",),
        environments=ENVIRONMENTS,
        issued_at=now_ms,
        expires_at=now_ms + CREDENTIAL_TTL_MS,
        issuer_key_id=issuer.key_id,
        actor_key=pair.public_key_b64,
    )
    return Holder(actor_id, key_file, issue_credential(claims, issuer))
