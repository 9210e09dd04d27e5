"""The env-rename agent: rename an environment variable in the files it is told to.

It renames only where it is pointed (`paths`), so the motivating incident can be replayed: a
rename that misses `deploy/prod.env` still commits, and the result lists the references to the
old name that remain. With `paths=None` it renames in every file that mentions the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sdlcflow.agents.reference._workspace import AgentWorkError, Workspace, agent_identity
from sdlcflow.gitops import (
    GitIdentity,
    GrepHit,
    PushStatus,
    checkout,
    commit_and_push,
    commit_time,
    grep_word,
    resolve,
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class EnvRenameInput:
    remote: Path
    base: str
    branch: str
    old: str
    new: str
    paths: tuple[str, ...] | None = None  # None: every file that mentions `old`
    identity: GitIdentity = field(default_factory=lambda: agent_identity("env-rename"))
    committed_at: int | None = None  # default: the base commit's time (reproducible SHA)


@dataclass(frozen=True)
class EnvRenameResult:
    base: str
    head: str
    branch: str
    old: str
    new: str
    paths: tuple[str, ...]  # files changed
    replacements: int
    remaining: tuple[GrepHit, ...]  # references to `old` still in the tree at `head`
    push: PushStatus | None  # None when nothing changed

    def outputs(self) -> dict[str, str]:
        return {
            "head": self.head,
            "branch": self.branch,
            "paths": ",".join(self.paths),
            "replacements": str(self.replacements),
            "remaining": ",".join(sorted({hit.path for hit in self.remaining})),
            "published": _published(self.push),
        }


def rename_env_var(request: EnvRenameInput, workspace: Workspace) -> EnvRenameResult:
    """Replace whole-word `old` by `new` in the chosen files; commit and push the branch."""
    for name in (request.old, request.new):
        if not _NAME.match(name):
            raise AgentWorkError(
                f"{name!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
    base = resolve(request.remote, request.base)
    when = (
        request.committed_at
        if request.committed_at is not None
        else commit_time(request.remote, base)
    )
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(request.old)}(?![A-Za-z0-9_])")
    targets = request.paths
    if targets is None:
        targets = tuple(sorted({hit.path for hit in grep_word(request.remote, base, request.old)}))
    head, paths, push = base, tuple[str, ...](), None
    with checkout(request.remote, base, parent=workspace.scratch) as tree:
        count = sum(_rename_in(tree.path, relative, word, request.new) for relative in targets)
        if count:
            outcome = commit_and_push(
                tree,
                request.branch,
                f"Rename environment variable {request.old} to {request.new}",
                identity=request.identity,
                when=when,
                guard=workspace.ensure_live,
            )
            head, paths, push = outcome.sha, outcome.paths, outcome.push
        remaining = grep_word(tree.path, head, request.old)
    return EnvRenameResult(
        base=base,
        head=head,
        branch=request.branch,
        old=request.old,
        new=request.new,
        paths=paths,
        replacements=count,
        remaining=remaining,
        push=push,
    )


def _rename_in(root: Path, relative: str, word: re.Pattern[str], new: str) -> int:
    path = root / relative
    if not path.is_file():
        raise AgentWorkError(f"{relative} does not exist at the base commit; list existing files")
    text, count = word.subn(new, path.read_text())
    if count:
        path.write_text(text)
    return count


def _published(push: PushStatus | None) -> str:
    """Same answer for the run that pushed and the rerun that found the branch there."""
    if push is None:
        return "unchanged"
    return "true" if push in (PushStatus.PUSHED, PushStatus.ALREADY) else "false"
