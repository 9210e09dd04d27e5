"""The trusted issuers file and key rotation: several issuer keys, the old ones draining.

File format (JSON object, key id -> entry); an entry is either the public key itself (unpadded
base64url) or an object with the key and, once it has been rotated out, when:

    {"ops-2026-10": {"public_key": "l0T9...", "retired_at": 1763900000000},
     "ops-2026-11": "x7Qa..."}

A retired key drains: credentials it signed at or before `retired_at` stay valid until they
expire (at most the maximum credential lifetime), credentials it claims to have signed later
are refused, so a leaked old key cannot mint new ones. Once every credential it could have
signed has expired, `prune` drops it. Rotation (`rotate`) adds the new key and retires every
key still active, in one atomic write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sdlcflow.errors import SdlcflowError
from sdlcflow.identity._files import replace_text
from sdlcflow.identity.credentials import DEFAULT_MAX_TTL_MS
from sdlcflow.identity.keys import KeyFileError, decode_public_key


class IssuersFileError(SdlcflowError):
    """The trusted issuers file is not JSON, or an entry is not a public key (with retirement)."""


@dataclass(frozen=True)
class IssuerEntry:
    """One trusted issuer key; `retired_at` (epoch ms) is set once a newer key replaced it."""

    public_key: str
    retired_at: int | None = None

    def to_json(self) -> str | dict[str, object]:
        if self.retired_at is None:
            return self.public_key
        return {"public_key": self.public_key, "retired_at": self.retired_at}


@dataclass(frozen=True)
class IssuerRing:
    """The decoded keys, and for retired ones the time after which they sign nothing valid."""

    keys: Mapping[str, Ed25519PublicKey]
    retired_at: Mapping[str, int]


def parse_entries(text: str, source: str) -> dict[str, IssuerEntry]:
    """Parse the file; errors name the file and the entry that is wrong and how to fix it."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise IssuersFileError(
            f"{source}: not JSON ({exc}); expected {{key id: public key}}"
        ) from None
    if not isinstance(body, dict):
        raise IssuersFileError(f"{source}: expected a JSON object {{key id: public key}}")
    return {key_id: _entry(key_id, value, source) for key_id, value in body.items()}


def _entry(key_id: str, value: object, source: str) -> IssuerEntry:
    if isinstance(value, str):
        return IssuerEntry(value)
    if isinstance(value, dict) and isinstance(value.get("public_key"), str):
        retired = value.get("retired_at")
        if retired is None or (isinstance(retired, int) and not isinstance(retired, bool)):
            return IssuerEntry(value["public_key"], retired)
    raise IssuersFileError(
        f"{source}: key {key_id!r} must be a base64url public key or "
        '{"public_key": "<base64url>", "retired_at": <epoch ms>}'
    )


def ring_of(entries: Mapping[str, IssuerEntry], source: str) -> IssuerRing:
    """Decode every public key; a bad one is reported with its key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, entry in entries.items():
        try:
            keys[key_id] = decode_public_key(entry.public_key)
        except KeyFileError as exc:
            raise IssuersFileError(f"{source}: key {key_id!r}: {exc}") from None
    retired = {k: e.retired_at for k, e in entries.items() if e.retired_at is not None}
    return IssuerRing(keys, retired)


def read_entries(path: Path) -> dict[str, IssuerEntry]:
    """The file's entries, or none when it does not exist yet (the first `keys rotate`)."""
    if not path.exists():
        return {}
    return parse_entries(path.read_bytes().decode("utf-8", "replace"), str(path))


def write_entries(path: Path, entries: Mapping[str, IssuerEntry]) -> None:
    """Replace the file atomically, so a coordinator re-reading it never sees half a file."""
    body = {key_id: entry.to_json() for key_id, entry in sorted(entries.items())}
    replace_text(path, json.dumps(body, indent=2) + "\n")


def rotate(
    entries: Mapping[str, IssuerEntry], new_key_id: str, new_public_key: str, now_ms: int
) -> dict[str, IssuerEntry]:
    """Trust `new_key_id` and retire every key still active at `now_ms` (they drain)."""
    if new_key_id in entries:
        raise IssuersFileError(
            f"key id {new_key_id!r} is already trusted; choose a new id, e.g. ops-<yyyy-mm-dd>"
        )
    decode_public_key(new_public_key)
    rotated = {
        key_id: entry if entry.retired_at is not None else IssuerEntry(entry.public_key, now_ms)
        for key_id, entry in entries.items()
    }
    rotated[new_key_id] = IssuerEntry(new_public_key)
    return rotated


def prune(
    entries: Mapping[str, IssuerEntry], now_ms: int, *, max_ttl_ms: int = DEFAULT_MAX_TTL_MS
) -> dict[str, IssuerEntry]:
    """Drop retired keys whose every credential has expired (retired more than a TTL ago)."""
    return {
        key_id: entry
        for key_id, entry in entries.items()
        if entry.retired_at is None or now_ms < entry.retired_at + max_ttl_ms
    }
