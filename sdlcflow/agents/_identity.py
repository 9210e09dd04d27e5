"""Who this agent process is: an actor id, a short-lived scoped credential, and its signing key.

Loaded from the environment (`SDLCFLOW_AGENT_CREDENTIAL`: the `sdlc1.` token itself or a file
holding it; `SDLCFLOW_AGENT_KEY`: the Ed25519 private key file) or given explicitly. Every event
the agent publishes carries the credential and a signature over envelope and payload, so the
coordinator can reject forged, expired or out-of-scope events (invariant 8). A credential file
is re-read when it changes, so ops can renew a credential without restarting the agent.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sdlcflow.agents._errors import IdentityError
from sdlcflow.core.events import Actor, ActorKind, Envelope
from sdlcflow.core.records import replace
from sdlcflow.identity import (
    CredentialClaims,
    KeyFileError,
    KeyPair,
    load_private_key,
    sign_event,
)
from sdlcflow.identity.credentials import TOKEN_PREFIX
from sdlcflow.identity.keys import b64url_decode

CREDENTIAL_ENV = "SDLCFLOW_AGENT_CREDENTIAL"
KEY_ENV = "SDLCFLOW_AGENT_KEY"


def read_claims(token: str) -> CredentialClaims:
    """The claims of a token, unverified: the agent learns its own id, scope and expiry.

    Only the coordinator (which trusts the issuer keys) verifies; the agent reads its own
    credential to fail early with a useful message instead of having every event rejected.
    """
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise IdentityError(
            f"credential is not an '{TOKEN_PREFIX}.<claims>.<signature>' token; ask ops for one "
            "(`sdlcflow keys issue`) and put it in SDLCFLOW_AGENT_CREDENTIAL"
        )
    try:
        body = json.loads(b64url_decode(parts[1]))
        if not isinstance(body, dict):
            raise TypeError("claims are not a JSON object")
        return CredentialClaims.from_json(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentityError(
            f"credential claims are malformed ({exc}); ask ops for a new one"
        ) from exc


class _CredentialSource:
    """A token given inline, or a file re-read whenever its modification time changes."""

    def __init__(self, token: str | None, path: Path | None) -> None:
        self._path = path
        self._mtime = -1
        self._token = (token or "").strip()
        self._lock = threading.Lock()
        if path is not None:
            self.current()

    def current(self) -> str:
        if self._path is None:
            return self._token
        with self._lock:
            try:
                mtime = self._path.stat().st_mtime_ns
                if mtime != self._mtime:
                    self._token, self._mtime = self._path.read_text().strip(), mtime
            except OSError as exc:
                if not self._token:
                    raise IdentityError(f"cannot read credential file {self._path}: {exc}") from exc
            return self._token


class AgentIdentity:
    """An agent's id, credential and key; `sign()` stamps envelopes with both.

    Args:
        credential: the `sdlc1.` token (or use `credential_file`).
        key: the agent's Ed25519 key pair.
        credential_file: a file holding the token, re-read when it changes (renewal).
    """

    def __init__(
        self,
        credential: str | None = None,
        *,
        key: KeyPair,
        credential_file: Path | None = None,
    ) -> None:
        if (credential is None) == (credential_file is None):
            raise IdentityError("give exactly one of credential= (a token) or credential_file=")
        self._source = _CredentialSource(credential, credential_file)
        self.key = key
        self._claims: tuple[str, CredentialClaims] | None = None
        claims = self.claims
        if claims.kind is not ActorKind.AGENT:
            raise IdentityError(
                f"credential is for a {claims.kind.value}, not an agent; ask ops for an agent "
                "credential"
            )
        if claims.actor_key is not None and claims.actor_key != key.public_key_b64:
            raise IdentityError(
                f"the credential is bound to public key {claims.actor_key[:12]}..., but the key "
                f"{key.key_id!r} is a different one; point SDLCFLOW_AGENT_KEY at the key the "
                "credential was issued for"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentIdentity:
        """Load from SDLCFLOW_AGENT_CREDENTIAL (token or file path) and SDLCFLOW_AGENT_KEY."""
        env = os.environ if environ is None else environ
        credential = env.get(CREDENTIAL_ENV, "").strip()
        key_path = env.get(KEY_ENV, "").strip()
        if not credential or not key_path:
            missing = [n for n, v in ((CREDENTIAL_ENV, credential), (KEY_ENV, key_path)) if not v]
            raise IdentityError(
                f"{' and '.join(missing)} not set: an agent needs a credential (the token or a "
                "file holding it) and its private key file; ask ops to issue them"
            )
        try:
            key = load_private_key(Path(key_path))
        except KeyFileError as exc:
            raise IdentityError(str(exc)) from exc
        if credential.startswith(f"{TOKEN_PREFIX}."):
            return cls(credential, key=key)
        return cls(key=key, credential_file=Path(credential))

    @property
    def credential(self) -> str:
        return self._source.current()

    @property
    def claims(self) -> CredentialClaims:
        """The current credential's claims (parsed once per token: every envelope names the
        actor, and parsing the token each time cost more than signing)."""
        token = self.credential
        cached = self._claims
        if cached is None or cached[0] != token:
            cached = (token, read_claims(token))
            self._claims = cached
        return cached[1]

    @property
    def actor_id(self) -> str:
        return self.claims.subject

    @property
    def actor(self) -> Actor:
        return Actor(ActorKind.AGENT, self.actor_id)

    def check(self, capabilities: Iterable[str], now_ms: int) -> None:
        """Fail up front when the credential cannot cover these agents right now."""
        claims = self.claims
        if now_ms >= claims.expires_at:
            raise IdentityError(
                f"credential {claims.credential_id} of {claims.subject} expired at "
                f"{claims.expires_at} ms; ask ops for a new one"
            )
        missing = sorted(set(capabilities) - set(claims.capabilities))
        if missing:
            raise IdentityError(
                f"credential of {claims.subject} covers {sorted(claims.capabilities)}, not "
                f"{missing}; ask ops for a credential that includes them or drop those agents"
            )

    def sign(self, envelope: Envelope, payload: Any) -> Envelope:
        """The envelope with this agent's credential and a signature over it and the payload."""
        stamped = replace(envelope, credential=self.credential, signature=None)
        return replace(stamped, signature=sign_event(stamped, payload, self.key))
