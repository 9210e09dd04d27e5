"""The dependency-update agent: bump one package's pin in the requirements and the lockfile,
commit that on a branch, publish it with a compare-and-swap."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sdlcflow.agents.reference._requirements import set_pin
from sdlcflow.agents.reference._workspace import AgentWorkError, Workspace, agent_identity
from sdlcflow.gitops import GitIdentity, PushStatus, checkout, commit_and_push, commit_time, resolve


@dataclass(frozen=True)
class DependencyUpdateInput:
    """Pin `package` at `version` on a new `branch` cut from `base`.

    `committed_at` (seconds) defaults to the base commit's time, so the same request always
    makes the same commit and a repeated run finds its branch already pushed.
    """

    remote: Path
    base: str
    branch: str
    package: str
    version: str
    requirements: tuple[str, ...] = ("requirements.txt",)
    lockfile: str = "requirements.lock"
    identity: GitIdentity = field(default_factory=lambda: agent_identity("dependency-update"))
    committed_at: int | None = None


@dataclass(frozen=True)
class DependencyUpdateResult:
    base: str
    head: str  # the new branch head; equals `base` when nothing needed to change
    branch: str
    package: str
    old_version: str | None
    new_version: str
    lockfile_digest: str  # sha256 of the lockfile at `head` (the artifact is stored)
    paths: tuple[str, ...]
    push: PushStatus | None  # None when nothing changed

    @property
    def published(self) -> bool:
        return self.push in (PushStatus.PUSHED, PushStatus.ALREADY)

    def outputs(self) -> dict[str, str]:
        return {
            "head": self.head,
            "branch": self.branch,
            "lockfile_digest": self.lockfile_digest,
            "paths": ",".join(self.paths),
            "published": _published(self.push),
        }


def update_dependency(
    request: DependencyUpdateInput, workspace: Workspace
) -> DependencyUpdateResult:
    """Edit every listed requirements file and the lockfile, then commit and push the branch."""
    base = resolve(request.remote, request.base)
    when = (
        request.committed_at
        if request.committed_at is not None
        else commit_time(request.remote, base)
    )
    with checkout(request.remote, base, parent=workspace.scratch) as tree:
        old = _edit_all(tree.path, request)
        lockfile = (tree.path / request.lockfile).read_bytes()
        lock_digest = workspace.store.put(lockfile)
        if old == request.version:
            return _unchanged(request, base, old, lock_digest)
        message = f"Bump {request.package} from {old} to {request.version}"
        outcome = commit_and_push(
            tree,
            request.branch,
            message,
            identity=request.identity,
            when=when,
            guard=workspace.ensure_live,
        )
    return DependencyUpdateResult(
        base=base,
        head=outcome.sha,
        branch=request.branch,
        package=request.package,
        old_version=old,
        new_version=request.version,
        lockfile_digest=lock_digest,
        paths=outcome.paths,
        push=outcome.push,
    )


def _edit_all(root: Path, request: DependencyUpdateInput) -> str:
    """Pin the package in every file; return the lockfile's old version."""
    old_versions: dict[str, str | None] = {}
    for relative in (*request.requirements, request.lockfile):
        path = root / relative
        if not path.is_file():
            raise AgentWorkError(
                f"{relative} does not exist at the base commit; name the right file"
            )
        text, old_versions[relative] = set_pin(path.read_text(), request.package, request.version)
        path.write_text(text)
    locked = old_versions[request.lockfile]
    if locked is None:
        raise AgentWorkError(
            f"{request.package} is not pinned in {request.lockfile}; it must be a locked "
            "dependency to be updated"
        )
    return locked


def _unchanged(
    request: DependencyUpdateInput, base: str, old: str, lock_digest: str
) -> DependencyUpdateResult:
    return DependencyUpdateResult(
        base=base,
        head=base,
        branch=request.branch,
        package=request.package,
        old_version=old,
        new_version=request.version,
        lockfile_digest=lock_digest,
        paths=(),
        push=None,
    )


def _published(push: PushStatus | None) -> str:
    """Same answer for the run that pushed and the rerun that found the branch there."""
    if push is None:
        return "unchanged"
    return "true" if push in (PushStatus.PUSHED, PushStatus.ALREADY) else "false"
