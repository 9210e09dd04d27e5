"""The policy-input collector: what the policies need to judge a change, read from git.

From base and head SHAs it gathers the files changed, dependency pins that moved (from the
requirements files and the lockfile), environment variables the code stopped reading (renamed
or removed) with every place in the head tree that still mentions the old name, variables the
code reads that an environment's config file does not set, migrations and whether each declares
a rollback, and the digests of the lockfile and of the exact diff.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdlcflow.agents.reference._requirements import major, pins
from sdlcflow.agents.reference._workspace import Workspace
from sdlcflow.gitops import GrepHit, diff, grep_word, list_files, read_blob, resolve

_READS = re.compile(
    r"""(?:environ\s*\.\s*get|environ\s*\.\s*setdefault|getenv)\s*\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""
    r"""|environ\s*\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]"""
)


@dataclass(frozen=True)
class PolicyInputRequest:
    remote: Path  # a bare repository or a checkout holding both SHAs
    base: str
    head: str
    requirements: tuple[str, ...] = ("requirements.txt",)
    lockfile: str = "requirements.lock"
    migrations_dir: str = "migrations"
    env_file_suffix: str = ".env"


@dataclass(frozen=True)
class DependencyChange:
    package: str
    old: str | None  # None: added
    new: str | None  # None: removed
    source: str  # the file the pin is in
    major_change: bool


@dataclass(frozen=True)
class EnvVarChange:
    name: str
    kind: str  # "renamed" or "removed"
    new_name: str | None
    still_referenced: tuple[GrepHit, ...]  # lines of the head tree still naming `name`


@dataclass(frozen=True)
class MigrationInfo:
    path: str
    rollback_declared: bool
    rollback_path: str | None


@dataclass(frozen=True)
class PolicyInputs:
    base: str
    head: str
    files_changed: tuple[str, ...]
    dependency_changes: tuple[DependencyChange, ...]
    env_var_changes: tuple[EnvVarChange, ...]
    env_vars_read: tuple[str, ...]  # by the code at head
    env_vars_unset: tuple[tuple[str, tuple[str, ...]], ...]  # env file -> read but not set there
    migrations: tuple[MigrationInfo, ...]
    lockfile_digest: str | None
    diff_digest: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, the shape policies receive as `input`."""
        data = asdict(self)
        data["env_vars_unset"] = {path: list(names) for path, names in self.env_vars_unset}
        return data


def collect_policy_inputs(request: PolicyInputRequest, workspace: Workspace) -> PolicyInputs:
    """Everything the policies read about the change from `request.base` to `request.head`."""
    repo = request.remote
    base, head = resolve(repo, request.base), resolve(repo, request.head)
    change = diff(repo, base, head)
    head_files = list_files(repo, head)
    reads_base, reads_head = _env_reads(repo, base), _env_reads(repo, head)
    lockfile = read_blob(repo, head, request.lockfile)
    return PolicyInputs(
        base=base,
        head=head,
        files_changed=change.paths,
        dependency_changes=_dependency_changes(repo, base, head, request),
        env_var_changes=_env_changes(repo, head, reads_base, reads_head),
        env_vars_read=tuple(sorted(reads_head)),
        env_vars_unset=_unset(repo, head, head_files, set(reads_head), request.env_file_suffix),
        migrations=_migrations(repo, head, change.paths, head_files, request.migrations_dir),
        lockfile_digest=None if lockfile is None else workspace.store.put(lockfile),
        diff_digest=workspace.store.put(change.text.encode("utf-8", "surrogateescape")),
    )


def _dependency_changes(
    repo: Path, base: str, head: str, request: PolicyInputRequest
) -> tuple[DependencyChange, ...]:
    changes = []
    for source in (*request.requirements, request.lockfile):
        before = pins(_text(read_blob(repo, base, source)))
        after = pins(_text(read_blob(repo, head, source)))
        for package in sorted(before.keys() | after.keys()):
            old, new = before.get(package), after.get(package)
            if old != new:
                moved = old is None or new is None or major(old) != major(new)
                changes.append(DependencyChange(package, old, new, source, moved))
    return tuple(changes)


def _env_reads(repo: Path, sha: str) -> dict[str, set[str]]:
    """Environment variables the Python code reads, with the files reading each."""
    reads: dict[str, set[str]] = {}
    for path in list_files(repo, sha):
        if path.endswith(".py"):
            for match in _READS.finditer(_text(read_blob(repo, sha, path))):
                reads.setdefault(match.group(1) or match.group(2), set()).add(path)
    return reads


def _env_changes(
    repo: Path, head: str, before: dict[str, set[str]], after: dict[str, set[str]]
) -> tuple[EnvVarChange, ...]:
    """Names the code stopped reading; a rename when one new name appeared in the same files."""
    gone, added = before.keys() - after.keys(), after.keys() - before.keys()
    changes = []
    for name in sorted(gone):
        candidates = sorted(new for new in added if after[new] & before[name])
        renamed = len(candidates) == 1
        changes.append(
            EnvVarChange(
                name=name,
                kind="renamed" if renamed else "removed",
                new_name=candidates[0] if renamed else None,
                still_referenced=grep_word(repo, head, name),
            )
        )
    return tuple(changes)


def _unset(
    repo: Path, head: str, files: tuple[str, ...], read: set[str], suffix: str
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    result = []
    for path in files:
        if path.endswith(suffix):
            defined = {
                line.partition("=")[0].strip()
                for line in _text(read_blob(repo, head, path)).splitlines()
                if "=" in line and not line.lstrip().startswith("#")
            }
            result.append((path, tuple(sorted(read - defined))))
    return tuple(result)


def _migrations(
    repo: Path, head: str, changed: tuple[str, ...], files: tuple[str, ...], directory: str
) -> tuple[MigrationInfo, ...]:
    """Changed migrations (not rollbacks themselves) and the rollback each declares, if any."""
    present = set(files)
    found = []
    for path in changed:
        if not path.startswith(directory.rstrip("/") + "/") or path not in present:
            continue
        if ".down." in Path(path).name:
            continue
        stem = path.removesuffix(".sql").removesuffix(".up")
        rollback = f"{stem}.down.sql" if f"{stem}.down.sql" in present else None
        inline = any(
            line.strip().lower().startswith("-- rollback:")
            for line in _text(read_blob(repo, head, path)).splitlines()
        )
        found.append(MigrationInfo(path, rollback is not None or inline, rollback))
    return tuple(found)


def _text(blob: bytes | None) -> str:
    return "" if blob is None else blob.decode("utf-8", "replace")
