"""Repository operations on local bare repositories standing in for remotes.

Every change is made in a fresh clone and published with a compare-and-swap push, so two
agents racing for the same branch cannot silently overwrite each other: the loser is told the
branch moved.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sdlcflow.gitops._git import GitError, GitIdentity, RefNotFound, git


@dataclass(frozen=True)
class Checkout:
    """A fresh working tree of `remote` with `sha` checked out (detached)."""

    path: Path
    remote: Path
    sha: str


@dataclass(frozen=True)
class Diff:
    """The exact unified diff between two commits and the paths it touches (sorted)."""

    base: str
    head: str
    text: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class GrepHit:
    """One line of a tree that mentions a word."""

    path: str
    line: int
    text: str


class PushStatus(StrEnum):
    """What a compare-and-swap push did."""

    PUSHED = "pushed"  # the branch moved from the expected SHA to ours
    ALREADY = "already"  # the branch was already at our SHA: nothing to do
    STALE = "stale"  # the branch was not where we expected: nothing written


def init_bare(remote: Path) -> Path:
    """Create an empty bare repository at `remote` (the stand-in for a hosted remote)."""
    remote.mkdir(parents=True, exist_ok=True)
    git(["init", "--quiet", "--bare", str(remote)], cwd=remote)
    return remote


def create_remote(
    template: Path,
    remote: Path,
    *,
    identity: GitIdentity,
    when: int,
    branch: str = "main",
    message: str = "Initial commit",
) -> str:
    """Make a bare repository at `remote` whose `branch` holds one commit of `template`'s files."""
    if not template.is_dir():
        raise GitError(f"template {template} is not a directory; pass the service's source tree")
    init_bare(remote)
    with tempfile.TemporaryDirectory(prefix="sdlcflow-seed-") as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(template, work, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        git(["init", "--quiet"], cwd=work)
        git(["add", "--all"], cwd=work)
        git(["commit", "--quiet", "-m", message], cwd=work, identity=identity, when=when)
        sha = resolve(work, "HEAD")
        git(["push", "--quiet", str(remote), f"{sha}:refs/heads/{branch}"], cwd=work)
    return sha


def clone_at(remote: Path, sha: str, dest: Path) -> Checkout:
    """Clone `remote` into the new directory `dest` and check out `sha` detached."""
    if dest.exists() and any(dest.iterdir()):
        raise GitError(f"{dest} is not empty; clone into a fresh directory")
    git(["clone", "--quiet", "--no-checkout", str(remote), str(dest)], cwd=dest.parent)
    full = resolve(dest, sha)
    git(["checkout", "--quiet", "--detach", full], cwd=dest)
    return Checkout(path=dest, remote=remote, sha=full)


@contextmanager
def checkout(remote: Path, sha: str, *, parent: Path | None = None) -> Iterator[Checkout]:
    """A fresh checkout of `sha` in a temporary directory, removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="sdlcflow-checkout-", dir=parent))
    try:
        yield clone_at(remote, sha, scratch / "tree")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def resolve(repo: Path, ref: str) -> str:
    """The full commit SHA `ref` names in `repo` (a branch, tag, short or full SHA)."""
    found = git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo, check=False)
    if found.returncode != 0:
        raise RefNotFound(
            f"{ref!r} names no commit in {repo}; fetch it or check the branch/SHA spelling"
        )
    return found.text.strip()


def branch_head(repo: Path, branch: str) -> str | None:
    """Where `branch` points in `repo`, or None when it does not exist."""
    found = git(
        ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
        cwd=repo,
        check=False,
    )
    return found.text.strip() if found.returncode == 0 else None


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    """True when `ancestor` is reachable from `descendant` (or is it)."""
    found = git(["merge-base", "--is-ancestor", ancestor, descendant], cwd=repo, check=False)
    if found.returncode not in (0, 1):
        raise GitError(f"cannot compare {ancestor} and {descendant} in {repo}: {found.stderr!r}")
    return found.returncode == 0


def commit_time(repo: Path, sha: str) -> int:
    """The committer timestamp (seconds) of `sha`: a deterministic default time for new commits."""
    return int(git(["show", "-s", "--format=%ct", sha], cwd=repo).text.strip())


def commit_all(work: Path, message: str, *, identity: GitIdentity, when: int) -> str:
    """Commit every change in the working tree and return the new SHA."""
    git(["add", "--all"], cwd=work)
    if git(["diff", "--cached", "--quiet"], cwd=work, check=False).returncode == 0:
        raise GitError(f"nothing to commit in {work}; the edit changed no file")
    git(["commit", "--quiet", "-m", message], cwd=work, identity=identity, when=when)
    return resolve(work, "HEAD")


def push_cas(
    work: Path, remote: Path, sha: str, branch: str, *, expected: str | None
) -> PushStatus:
    """Set `branch` on `remote` to `sha` only if it is at `expected` (None: must not exist)."""
    current = branch_head(remote, branch)
    if current == sha:
        return PushStatus.ALREADY
    if current != expected:
        return PushStatus.STALE
    lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
    pushed = git(
        ["push", "--quiet", "--porcelain", lease, str(remote), f"{sha}:refs/heads/{branch}"],
        cwd=work,
        check=False,
    )
    if pushed.returncode == 0:
        return PushStatus.PUSHED
    return PushStatus.ALREADY if branch_head(remote, branch) == sha else PushStatus.STALE


@dataclass(frozen=True)
class CommitOutcome:
    """A commit made on a branch and what publishing it did."""

    sha: str
    branch: str
    push: PushStatus
    paths: tuple[str, ...]


def commit_and_push(
    work: Checkout,
    branch: str,
    message: str,
    *,
    identity: GitIdentity,
    when: int,
    expected: str | None = None,
    guard: Callable[[], None] | None = None,
) -> CommitOutcome:
    """Commit the checkout's changes on top of its SHA and publish them as `branch`.

    The push is a compare-and-swap from `expected` (None: the branch must not exist yet);
    since identity and time are inputs, repeating the same edit finds the branch already there.
    `guard` runs just before the push and may raise to stop it (e.g. the lease was lost).
    """
    sha = commit_all(work.path, message, identity=identity, when=when)
    paths = diff(work.path, work.sha, sha).paths
    if guard is not None:
        guard()
    status = push_cas(work.path, work.remote, sha, branch, expected=expected)
    return CommitOutcome(sha=sha, branch=branch, push=status, paths=paths)


def commit_change(
    remote: Path,
    base: str,
    branch: str,
    edits: Mapping[str, bytes | None],
    *,
    message: str,
    identity: GitIdentity,
    when: int,
    expected: str | None = None,
    scratch: Path | None = None,
    guard: Callable[[], None] | None = None,
) -> CommitOutcome:
    """Write `edits` (path -> new bytes, None deletes) on top of `base` and publish as `branch`."""
    with checkout(remote, base, parent=scratch) as work:
        for relative, data in edits.items():
            target = work.path / relative
            if data is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return commit_and_push(
            work, branch, message, identity=identity, when=when, expected=expected, guard=guard
        )


def diff(repo: Path, base: str, head: str) -> Diff:
    """The exact unified diff from `base` to `head` (no rename detection: paths are literal)."""
    base_sha, head_sha = resolve(repo, base), resolve(repo, head)
    flags = ["--no-color", "--no-ext-diff", "--no-renames"]
    text = git(["diff", *flags, "--full-index", "--binary", base_sha, head_sha], cwd=repo).text
    names = git(["diff", *flags, "--name-only", "-z", base_sha, head_sha], cwd=repo).text
    return Diff(
        base=base_sha,
        head=head_sha,
        text=text,
        paths=tuple(sorted(p for p in names.split("\0") if p)),
    )


def read_blob(repo: Path, sha: str, path: str) -> bytes | None:
    """The bytes of `path` at commit `sha`, or None when the file does not exist there."""
    found = git(["cat-file", "blob", f"{sha}:{path}"], cwd=repo, check=False)
    return found.stdout if found.returncode == 0 else None


def list_files(repo: Path, sha: str) -> tuple[str, ...]:
    """Every file path in the tree of `sha`, sorted."""
    out = git(["ls-tree", "-r", "-z", "--name-only", "--full-tree", sha], cwd=repo).text
    return tuple(sorted(p for p in out.split("\0") if p))


def grep_word(repo: Path, sha: str, word: str) -> tuple[GrepHit, ...]:
    """Every line of the tree at `sha` containing `word` as a whole word (fixed string)."""
    full = resolve(repo, sha)
    found = git(
        ["grep", "-n", "-z", "-w", "-F", "-I", "-e", word, full, "--"], cwd=repo, check=False
    )
    if found.returncode == 1:
        return ()
    if found.returncode != 0:
        raise GitError(f"git grep for {word!r} in {repo} failed: {found.stderr!r}")
    hits = []
    for row in found.text.splitlines():
        path, line, text = row.split("\0", 2)
        hits.append(GrepHit(path=path.removeprefix(f"{full}:"), line=int(line), text=text))
    return tuple(hits)
