"""The revocation list: credentials (by id) and actors whose credentials must no longer count.

The coordinator re-reads it when it changes (`sdlcflow.processors.trust`); ops add to it with
`sdlcflow keys revoke`. File format (JSON), times in epoch ms:

    {"credentials": {"cred-1a2b...": 1763900000000},
     "actors": {"agent-lint-7": 1763900000000}}

A revoked credential id is refused from then on whatever its expiry; a revoked actor has
every credential issued at or before the time refused, so a fresh credential works again.
Entries older than the maximum credential lifetime can be dropped (`prune`): the credentials
they name have expired anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sdlcflow.errors import SdlcflowError
from sdlcflow.identity._files import replace_text
from sdlcflow.identity.credentials import DEFAULT_MAX_TTL_MS


class RevocationFileError(SdlcflowError):
    """The revocation list is not JSON of the documented shape."""


@dataclass(frozen=True)
class RevocationList:
    """Revoked credential ids and actors, each with the time of revocation (epoch ms)."""

    credentials: Mapping[str, int] = field(default_factory=dict)
    actors: Mapping[str, int] = field(default_factory=dict)

    def revoke_credential(self, credential_id: str, at_ms: int) -> RevocationList:
        return RevocationList({**self.credentials, credential_id: at_ms}, dict(self.actors))

    def revoke_actor(self, actor_id: str, at_ms: int) -> RevocationList:
        return RevocationList(dict(self.credentials), {**self.actors, actor_id: at_ms})

    def prune(self, now_ms: int, *, max_ttl_ms: int = DEFAULT_MAX_TTL_MS) -> RevocationList:
        """Without entries so old that every credential they could name has expired."""

        def keep(at: int) -> bool:
            return now_ms < at + max_ttl_ms

        return RevocationList(
            {k: at for k, at in self.credentials.items() if keep(at)},
            {k: at for k, at in self.actors.items() if keep(at)},
        )

    def to_json(self) -> dict[str, dict[str, int]]:
        return {"credentials": dict(self.credentials), "actors": dict(self.actors)}


def parse_revocations(text: str, source: str) -> RevocationList:
    """Parse the list; errors name the file and the section that is wrong."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise RevocationFileError(f"{source}: not JSON ({exc})") from None
    if not isinstance(body, dict) or set(body) - {"credentials", "actors"}:
        raise RevocationFileError(
            f'{source}: expected {{"credentials": {{id: ms}}, "actors": {{id: ms}}}}'
        )
    return RevocationList(_section(body, "credentials", source), _section(body, "actors", source))


def _section(body: Mapping[str, object], name: str, source: str) -> dict[str, int]:
    section = body.get(name, {})
    if not isinstance(section, dict) or not all(
        isinstance(at, int) and not isinstance(at, bool) for at in section.values()
    ):
        raise RevocationFileError(f"{source}: {name!r} must map ids to epoch milliseconds")
    return dict(section)


def read_revocations(path: Path) -> RevocationList:
    """The list in `path`, empty when the file does not exist (nothing revoked yet)."""
    if not path.exists():
        return RevocationList()
    return parse_revocations(path.read_bytes().decode("utf-8", "replace"), str(path))


def write_revocations(path: Path, revocations: RevocationList) -> None:
    """Replace the file atomically, so a coordinator re-reading it never sees half a file."""
    replace_text(path, json.dumps(revocations.to_json(), indent=2, sort_keys=True) + "\n")
