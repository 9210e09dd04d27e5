"""A deterministic tarball of a commit's tree: the deployable artifact.

Entries are sorted, owners and mtimes fixed, gzip's own timestamp zeroed, and the bytes come
from git objects rather than a working tree, so one tree always yields one digest. The same
tree at two commits is the same artifact; the release record carries the source SHA.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from sdlcflow.gitops._git import GitError, git
from sdlcflow.gitops._repo import resolve

ARCHIVE_MTIME = 0
_EXECUTABLE = "100755"
_SYMLINK = "120000"


def tree_archive(repo: Path, sha: str) -> bytes:
    """The gzip tarball of every file in the tree of `sha`, byte-for-byte reproducible."""
    full = resolve(repo, sha)
    entries = _ls_tree(repo, full)
    blobs = _read_blobs(repo, [oid for _, oid, _ in entries])
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for mode, oid, path in entries:
            tar.addfile(*_member(mode, path, blobs[oid]))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def tree_files(repo: Path, sha: str) -> dict[str, bytes]:
    """Every regular file in the tree of `sha` (symlinks left out), by path, read from git's
    objects in one batch: what a scanner reads without a working tree."""
    full = resolve(repo, sha)
    entries = [(mode, oid, path) for mode, oid, path in _ls_tree(repo, full) if mode != _SYMLINK]
    blobs = _read_blobs(repo, [oid for _, oid, _ in entries])
    return {path: blobs[oid] for _, oid, path in entries}


def _member(mode: str, path: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info = tarfile.TarInfo(path)
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if mode == _SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = data.decode("utf-8", "surrogateescape")
        info.mode = 0o777
        return info, None
    info.mode = 0o755 if mode == _EXECUTABLE else 0o644
    info.size = len(data)
    return info, io.BytesIO(data)


def _ls_tree(repo: Path, sha: str) -> list[tuple[str, str, str]]:
    """(mode, blob id, path) of every file, sorted by path; submodules are left out."""
    out = git(["ls-tree", "-r", "-z", "--full-tree", sha], cwd=repo).text
    entries = []
    for row in filter(None, out.split("\0")):
        info, path = row.split("\t", 1)
        mode, kind, oid = info.split()
        if kind == "blob":
            entries.append((mode, oid, path))
    return sorted(entries, key=lambda entry: entry[2])


def _read_blobs(repo: Path, oids: list[str]) -> dict[str, bytes]:
    """Blob contents by id, read in one `git cat-file --batch` call."""
    unique = sorted(set(oids))
    out = git(["cat-file", "--batch"], cwd=repo, stdin="".join(f"{o}\n" for o in unique).encode())
    data, blobs, offset = out.stdout, {}, 0
    for oid in unique:
        header_end = data.index(b"\n", offset)
        got, kind, size = data[offset:header_end].decode().split()
        if got != oid or kind != "blob":
            raise GitError(f"git cat-file returned {got} {kind} while reading blob {oid}")
        start = header_end + 1
        blobs[oid] = data[start : start + int(size)]
        offset = start + int(size) + 1
    return blobs
