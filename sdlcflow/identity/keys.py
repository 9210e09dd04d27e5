"""Ed25519 key pairs for agents, reviewers and ops: generate, save (0600), load, encode.

Public keys travel as unpadded base64url of their 32 raw bytes, so they fit in a config file,
an env var or a Kafka header. Private keys are PKCS#8 PEM files readable only by their owner.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sdlcflow.errors import SdlcflowError

PRIVATE_KEY_MODE = 0o600


class KeyFileError(SdlcflowError):
    """A key file or encoded key is missing, malformed, of the wrong type or too widely readable."""


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, the encoding of keys, signatures and token segments."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of `b64url_encode`; raises ValueError on anything that is not base64url, or
    not its one canonical form (unused trailing bits set): a signed value has one spelling."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc
    if b64url_encode(raw) != text:
        raise ValueError("not canonical base64url (unused trailing bits are set)")
    return raw


_B64URL = re.compile("[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class KeyPair:
    """A named Ed25519 key pair; `key_id` is how verifiers find the public half."""

    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_b64(self) -> str:
        return encode_public_key(self.public_key)


def generate_key_pair(key_id: str) -> KeyPair:
    """A fresh key pair (the only function here that uses randomness)."""
    _check_key_id(key_id)
    return KeyPair(key_id=key_id, private_key=Ed25519PrivateKey.generate())


def _check_key_id(key_id: str) -> None:
    if not key_id or any(c.isspace() or c == "." for c in key_id):
        raise KeyFileError(
            f"key id {key_id!r} is invalid: use a non-empty name without spaces or dots, "
            "e.g. 'ops-2024-06' or 'reviewer.alice' -> 'reviewer-alice'"
        )


def encode_public_key(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64url_encode(raw)


def decode_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64url form; raises KeyFileError naming what was wrong."""
    try:
        raw = b64url_decode(text.strip())
    except ValueError as exc:
        raise KeyFileError(f"public key {text!r} is not base64url: {exc}") from exc
    if len(raw) != 32:
        raise KeyFileError(f"public key decodes to {len(raw)} bytes; an Ed25519 key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


class SignatureVerifier(Protocol):
    """What checks a signature: `Ed25519PublicKey` and `VerifyKey` both do."""

    def verify(self, signature: bytes, data: bytes) -> None:
        """Return if `signature` signs `data`, else raise cryptography's InvalidSignature."""


@dataclass(frozen=True)
class VerifyKey:
    """An Ed25519 public key kept for checking many signatures (the coordinator checks one per
    input): libsodium verifies in about half OpenSSL's time. It accepts a subset of what
    OpenSSL accepts (it also refuses small-order keys and R points, which no honestly made key
    or signature has), so no signature OpenSSL refuses passes here."""

    public_key: Ed25519PublicKey
    _sodium: nacl.signing.VerifyKey

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> VerifyKey:
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(key, nacl.signing.VerifyKey(raw))

    def verify(self, signature: bytes, data: bytes) -> None:
        """Like `Ed25519PublicKey.verify`: raise InvalidSignature unless `signature` signs
        `data`."""
        try:
            self._sodium.verify(data, signature)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise InvalidSignature from None


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def save_private_key(pair: KeyPair, path: Path) -> None:
    """Write the private key as PEM, creating the file with mode 0600 (never briefly wider)."""
    header = f"# sdlcflow key id: {pair.key_id}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(header + private_key_pem(pair.private_key))
    os.chmod(path, PRIVATE_KEY_MODE)


def load_private_key(path: Path) -> KeyPair:
    """Read a key file written by `save_private_key`; refuse files others can read."""
    if not path.exists():
        raise KeyFileError(f"key file {path} does not exist; create one with `sdlcflow keys new`")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
        )
    data = path.read_bytes()
    key_id = _key_id_from_header(data) or path.stem
    try:
        key = serialization.load_pem_private_key(_strip_header(data), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"key file {path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}; sdlcflow needs Ed25519")
    return KeyPair(key_id=key_id, private_key=key)


def _key_id_from_header(data: bytes) -> str | None:
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    prefix = "# sdlcflow key id: "
    return first[len(prefix) :].strip() if first.startswith(prefix) else None


def _strip_header(data: bytes) -> bytes:
    return b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"#"))
