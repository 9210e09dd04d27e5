"""A content-addressed, append-only store: an artifact's name is the sha256 of its bytes.

Nothing is ever rewritten: writing the same bytes twice is a no-op that returns the same digest,
and every read re-hashes, so a file changed on disk is reported, never served.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sdlcflow.errors import SdlcflowError

DIGEST_PREFIX = "sha256:"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_CHUNK = 1 << 20


class ArtifactError(SdlcflowError):
    """An artifact was asked for that the store cannot give as it is."""


class ArtifactNotFound(ArtifactError):
    """No artifact with this digest was ever stored here."""


class ArtifactTampered(ArtifactError):
    """The bytes on disk no longer hash to their name: someone changed a stored artifact."""


def digest_of(data: bytes) -> str:
    """The name an artifact with these bytes has in every sdlcflow store."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed `sha256:<64 hex>` name, else say how to fix it."""
    if not _DIGEST.match(digest):
        raise ArtifactError(
            f"{digest!r} is not an artifact digest; expected 'sha256:' followed by 64 lowercase "
            "hex digits, as returned by ArtifactStore.put"
        )
    return digest


class ArtifactStore:
    """Artifacts as read-only files under `root/objects/sha256/<2 hex>/<62 hex>`."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._objects = root / "objects" / "sha256"
        self._objects.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        return self._root

    def put(self, data: bytes) -> str:
        """Store `data` once and return its digest; storing it again changes nothing."""
        digest = digest_of(data)
        final = self.path(digest)
        if final.exists():
            self._verify_file(digest, final)
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, 0o444)
            try:
                os.link(tmp_name, final)  # fails rather than replaces: no rewrite, ever
            except FileExistsError:
                self._verify_file(digest, final)  # a concurrent writer stored it first
        finally:
            os.unlink(tmp_name)
        return digest

    def put_file(self, source: Path) -> str:
        """Store the contents of a file and return its digest."""
        return self.put(source.read_bytes())

    def get(self, digest: str) -> bytes:
        """The bytes named by `digest`, re-hashed on every read."""
        data = self._read(digest)
        if digest_of(data) != digest:
            raise ArtifactTampered(
                f"artifact {digest} at {self.path(digest)} no longer matches its digest; the "
                "store is append-only, so restore the file from a replica or rebuild the artifact"
            )
        return data

    def exists(self, digest: str) -> bool:
        return self.path(check_digest(digest)).exists()

    def path(self, digest: str) -> Path:
        """Where the artifact lives on disk (read it through `get` to have it verified)."""
        hexdigest = check_digest(digest).removeprefix(DIGEST_PREFIX)
        return self._objects / hexdigest[:2] / hexdigest[2:]

    def digests(self) -> Iterator[str]:
        """Every stored digest, in no particular order."""
        for shard in sorted(self._objects.iterdir()):
            for entry in sorted(shard.iterdir()):
                if not entry.name.startswith("."):
                    yield DIGEST_PREFIX + shard.name + entry.name

    def verify_all(self) -> tuple[str, ...]:
        """Digests whose files were tampered with; empty when the store is intact."""
        bad = []
        for digest in self.digests():
            try:
                self.get(digest)
            except ArtifactTampered:
                bad.append(digest)
        return tuple(bad)

    def _read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(
                f"no artifact {digest} in {self._root}; store it with put() first, or point "
                "at the store that holds it"
            ) from None

    def _verify_file(self, digest: str, path: Path) -> None:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        if DIGEST_PREFIX + hasher.hexdigest() != digest:
            raise ArtifactTampered(
                f"artifact {digest} at {path} no longer matches its digest; refusing to treat "
                "it as stored — restore the file or move it aside and put() again"
            )
