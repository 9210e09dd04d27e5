"""Environments as append-only release logs with a blue/green switch.

Each environment has two slots. A deploy unpacks the artifact into the idle slot and smoke-checks
it there; only a passing check flips the active pointer (an `activated` record). A failing check
appends a `rejected` record and the previous release stays active: the automatic rollback. An
explicit `rollback` flips back to the release that was active before the last switch. The
pointer is never stored anywhere but in the log, so `current(env)` is always explained by
`history(env)`.
"""

from __future__ import annotations

import io
import posixpath
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sdlcflow.artifacts._journal import Journal
from sdlcflow.artifacts._store import ArtifactError, ArtifactStore, check_digest

ENVIRONMENTS: tuple[str, ...] = ("staging", "prod")


class ReleaseError(ArtifactError):
    """A release could not be made or undone as asked."""


class Slot(StrEnum):
    """The two places a release can live in; one is active, the other takes the next deploy."""

    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Slot:
        return Slot.GREEN if self is Slot.BLUE else Slot.BLUE


class ReleaseAction(StrEnum):
    """What a release record did to the active pointer."""

    ACTIVATED = "activated"  # smoke passed, pointer flipped to this artifact
    REJECTED = "rejected"  # smoke failed, pointer stays on the previous release
    ROLLED_BACK = "rolled_back"  # pointer flipped back to the release before the last switch

    @property
    def moves_pointer(self) -> bool:
        return self is not ReleaseAction.REJECTED


@dataclass(frozen=True)
class Release:
    """One record of an environment's log.

    `artifact`/`source_sha`/`slot` name what the record is about: the deployed build for
    `activated`/`rejected`, the restored build for `rolled_back`. `replaces` is the seq of the
    release that was active when this record was written (None for the first).
    """

    env: str
    seq: int
    action: ReleaseAction
    artifact: str
    source_sha: str
    slot: Slot
    by: str
    at: int
    why: str
    smoke_log: str | None
    replaces: int | None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Release:
        replaces = record.get("replaces")
        smoke_log = record.get("smoke_log")
        return cls(
            env=str(record["env"]),
            seq=int(record["seq"]),
            action=ReleaseAction(record["action"]),
            artifact=str(record["artifact"]),
            source_sha=str(record["source_sha"]),
            slot=Slot(record["slot"]),
            by=str(record["by"]),
            at=int(record["at"]),
            why=str(record["why"]),
            smoke_log=None if smoke_log is None else str(smoke_log),
            replaces=None if replaces is None else int(replaces),
        )


@dataclass(frozen=True)
class SmokeOutcome:
    """What a smoke check of a staged slot found; `log` is the digest of its output."""

    passed: bool
    log: str | None = None


#: A smoke check: given the staged slot's directory, say whether the release works.
SmokeCheck = Callable[[Path], SmokeOutcome]


@dataclass(frozen=True)
class DeployOutcome:
    """The record a deploy wrote (or found, when it had already been done) and the active one."""

    record: Release
    current: Release | None
    changed: bool

    @property
    def live(self) -> bool:
        """True when the requested build is what the environment serves now."""
        return self.record.action is ReleaseAction.ACTIVATED and self.current == self.record


class Releases:
    """The release logs and slots of every environment, kept next to an artifact store."""

    def __init__(self, store: ArtifactStore, *, environments: tuple[str, ...] = ENVIRONMENTS):
        self._store = store
        self._environments = environments
        self._root = store.root / "envs"

    def history(self, env: str) -> tuple[Release, ...]:
        """Every record of `env`, oldest first."""
        return tuple(Release.from_record(r) for r in self._journal(env).read())

    def current(self, env: str) -> Release | None:
        """The release `env` serves now, or None before its first successful deploy."""
        return _current(self.history(env))

    def slot_dir(self, env: str, slot: Slot) -> Path:
        """Where a slot's files are unpacked."""
        self._check_env(env)
        return self._root / env / "slots" / slot.value

    def deploy(
        self,
        env: str,
        artifact: str,
        source_sha: str,
        *,
        by: str,
        at: int,
        why: str,
        smoke: SmokeCheck,
    ) -> DeployOutcome:
        """Stage `artifact` in the idle slot, smoke-check it, and flip only if it passes.

        Deploys of one environment are serialized by the log's lock. Deploying what is already
        active, or repeating a deploy whose smoke check was just rejected, returns the existing
        record instead of writing another.
        """
        check_digest(artifact)
        journal = self._journal(env)
        with journal.transaction() as tx:
            history = tuple(Release.from_record(r) for r in tx.read())
            current = _current(history)
            done = _already_done(history, current, artifact, source_sha)
            if done is not None:
                return DeployOutcome(record=done, current=current, changed=False)
            slot = Slot.BLUE if current is None else current.slot.other
            self._unpack(artifact, self.slot_dir(env, slot))
            outcome = smoke(self.slot_dir(env, slot))
            action = ReleaseAction.ACTIVATED if outcome.passed else ReleaseAction.REJECTED
            fields = _fields(env, action, artifact, source_sha, slot, by, at, why, current)
            record = Release.from_record(tx.append({**fields, "smoke_log": outcome.log}))
        return DeployOutcome(
            record=record, current=record if outcome.passed else current, changed=True
        )

    def rollback(self, env: str, *, by: str, at: int, why: str) -> Release:
        """Flip `env` back to the release that was active before the last switch."""
        journal = self._journal(env)
        with journal.transaction() as tx:
            history = tuple(Release.from_record(r) for r in tx.read())
            current = _current(history)
            if current is None or current.replaces is None:
                raise ReleaseError(
                    f"{env} has no earlier release to roll back to; deploy a known-good "
                    "artifact instead"
                )
            target = history[current.replaces]
            slot = current.slot.other
            self._unpack(target.artifact, self.slot_dir(env, slot))
            fields = _fields(
                env,
                ReleaseAction.ROLLED_BACK,
                target.artifact,
                target.source_sha,
                slot,
                by,
                at,
                why,
                current,
            )
            return Release.from_record(tx.append({**fields, "smoke_log": None}))

    def _unpack(self, artifact: str, dest: Path) -> None:
        """Replace a slot's files with the artifact's tree (a gzip tarball)."""
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(self._store.get(artifact)), mode="r:gz") as tar:
            _unpack_into(tar, dest, artifact)

    def _journal(self, env: str) -> Journal:
        self._check_env(env)
        return Journal(self._root / env / "releases.jsonl")

    def _check_env(self, env: str) -> None:
        if env not in self._environments:
            raise ReleaseError(
                f"unknown environment {env!r}; choose one of {', '.join(self._environments)}"
            )


def _unpack_into(tar: tarfile.TarFile, dest: Path, artifact: str) -> None:
    """Write the tarball's files, directories and symlinks under `dest`, refusing the whole
    artifact first if any member could reach outside it. Written here rather than by
    `extractall`: Python 3.11 before 3.11.4 (Debian 12's) has no extraction filters. Only
    relative names without `..`, no member below a symlink of the archive, no name twice,
    symlinks that resolve inside the slot by their names alone, no hard links or devices;
    modes lose setuid, setgid and group/other write, and nothing is chowned."""
    members = tar.getmembers()
    names = [posixpath.normpath(m.name) for m in members]  # written where normalised to
    links = {name for name, m in zip(names, members, strict=True) if m.issym()}
    seen: set[str] = set()
    for member, name in zip(members, names, strict=True):
        problem = _member_problem(member, name, links, seen)
        if problem:
            raise ReleaseError(
                f"artifact {artifact}: member {member.name!r} {problem}; "
                "rebuild it from the repository's tree"
            )
        seen.add(name)
    for member, name in zip(members, names, strict=True):
        target = dest / name
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.issym():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(member.linkname)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None, "a regular file has content"
            with source, open(target, "xb") as out:
                shutil.copyfileobj(source, out)
        if not member.issym():
            target.chmod(member.mode & 0o755)


def _member_problem(member: tarfile.TarInfo, name: str, links: set[str], seen: set[str]) -> str:
    """Why a member may not be unpacked into a slot ("" when it may)."""
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or name == ".":
        return "would be written outside the slot"
    if not (member.isfile() or member.isdir() or member.issym()):
        return "is not a file, directory or symlink"
    if name in seen:
        return "appears twice"
    if _through_link(parts, links):
        return "lies below a symlink of the artifact"
    if member.issym():
        # read by name alone, which is how the system resolves it unless a symlink is on the way
        steps = posixpath.join(posixpath.dirname(name), member.linkname).split("/")
        pointed = posixpath.normpath("/".join(steps))
        if member.linkname.startswith("/") or pointed == ".." or pointed.startswith("../"):
            return f"links to {member.linkname!r}, outside the slot"
        if _through_link(steps, links) or pointed in links:
            return f"links to {member.linkname!r} through a symlink of the artifact"
    return ""


def _through_link(steps: list[str], links: set[str]) -> bool:
    """Does a path pass through one of the archive's symlinks before its last step?"""
    prefixes = ("/".join(steps[:depth]) for depth in range(1, len(steps)))
    return any(posixpath.normpath(prefix) in links for prefix in prefixes)


def _current(history: tuple[Release, ...]) -> Release | None:
    for release in reversed(history):
        if release.action.moves_pointer:
            return release
    return None


def _already_done(
    history: tuple[Release, ...], current: Release | None, artifact: str, source_sha: str
) -> Release | None:
    """The record that already answers this deploy: the active release, or the last rejection."""
    if current is not None and (current.artifact, current.source_sha) == (artifact, source_sha):
        return current
    last = history[-1] if history else None
    if (
        last is not None
        and last.action is ReleaseAction.REJECTED
        and (last.artifact, last.source_sha) == (artifact, source_sha)
    ):
        return last
    return None


def _fields(
    env: str,
    action: ReleaseAction,
    artifact: str,
    source_sha: str,
    slot: Slot,
    by: str,
    at: int,
    why: str,
    current: Release | None,
) -> dict[str, Any]:
    return {
        "env": env,
        "action": action.value,
        "artifact": artifact,
        "source_sha": source_sha,
        "slot": slot.value,
        "by": by,
        "at": at,
        "why": why,
        "replaces": None if current is None else current.seq,
    }
