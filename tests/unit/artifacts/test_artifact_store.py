import os
import threading
from pathlib import Path

import pytest

from sdlcflow.artifacts import (
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTampered,
    digest_of,
)


def _tamper(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


class TestArtifactStore:
    """Artifacts are named by their sha256, never rewritten, and verified on every read."""

    def test_put_returns_the_sha256_digest_and_get_returns_the_bytes(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        digest = store.put(b"release notes")
        assert digest == digest_of(b"release notes")
        assert digest.startswith("sha256:") and len(digest) == 7 + 64
        assert store.get(digest) == b"release notes"

    def test_writing_the_same_content_twice_is_a_no_op(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        first = store.put(b"same")
        stat = store.path(first).stat()
        second = store.put(b"same")
        assert first == second
        assert store.path(second).stat().st_ino == stat.st_ino
        assert list(store.digests()) == [first]

    def test_stored_files_are_read_only(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        digest = store.put(b"frozen")
        assert store.path(digest).stat().st_mode & 0o222 == 0

    def test_tampering_is_detected_on_read(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        digest = store.put(b"genuine")
        _tamper(store.path(digest), b"forged")
        with pytest.raises(ArtifactTampered, match="no longer matches"):
            store.get(digest)
        assert store.verify_all() == (digest,)

    def test_putting_content_whose_file_was_tampered_refuses(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        digest = store.put(b"genuine")
        _tamper(store.path(digest), b"forged")
        with pytest.raises(ArtifactTampered):
            store.put(b"genuine")

    def test_unknown_digest_is_not_found(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        with pytest.raises(ArtifactNotFound, match="no artifact"):
            store.get(digest_of(b"never stored"))

    def test_malformed_digest_is_rejected_with_the_expected_shape(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        with pytest.raises(ArtifactError, match="64 lowercase hex"):
            store.get("md5:abc")

    def test_concurrent_writers_of_one_content_agree(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path)
        payload = os.urandom(256 * 1024)
        digests: list[str] = []
        threads = [
            threading.Thread(target=lambda: digests.append(store.put(payload))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert set(digests) == {digest_of(payload)}
        assert store.verify_all() == ()
        assert not [p for p in store.path(digests[0]).parent.iterdir() if p.name.startswith(".")]
