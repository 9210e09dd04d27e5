"""Three-way merge of a head onto a target branch, guarded by an optimistic check.

The caller names the target SHA it verified; the merge is computed against exactly that SHA and
published with a compare-and-swap, so a target that moved meanwhile is reported, never
overwritten. Conflicts come back as the conflicting hunks; nothing is pushed then. The merge
commit's identity and time are inputs, so running the same merge twice gives the same SHA and
the second run finds it already done.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sdlcflow.gitops._git import GitError, GitIdentity, git
from sdlcflow.gitops._repo import PushStatus, branch_head, is_ancestor, push_cas, resolve


class MergeStatus(StrEnum):
    MERGED = "merged"  # a merge commit now heads the target
    FAST_FORWARD = "fast_forward"  # the target now points at the head itself
    UP_TO_DATE = "up_to_date"  # the head was already contained in the target
    CONFLICT = "conflict"  # the changes overlap; nothing was written
    TARGET_MOVED = "target_moved"  # the target is not at the expected SHA; nothing was written


@dataclass(frozen=True)
class ConflictHunk:
    """One conflicting region of a file: the target's lines, the head's, and the base's."""

    start_line: int
    ours: str
    base: str
    theirs: str


@dataclass(frozen=True)
class ConflictedPath:
    """A path the merge could not resolve, the kind git reports, and its hunks (if textual)."""

    path: str
    kinds: tuple[str, ...]
    stages: tuple[int, ...]  # 1 base, 2 target ("ours"), 3 head ("theirs") present
    hunks: tuple[ConflictHunk, ...]


@dataclass(frozen=True)
class MergeResult:
    status: MergeStatus
    target_branch: str
    expected_target: str
    head: str
    result_sha: str | None  # the target's new (or unchanged) SHA; None on conflict/moved
    actual_target: str | None  # where the target really was when we looked
    conflicts: tuple[ConflictedPath, ...]
    messages: tuple[str, ...]

    @property
    def landed(self) -> bool:
        """True when the target contains the head at `result_sha`."""
        return self.status in (MergeStatus.MERGED, MergeStatus.FAST_FORWARD, MergeStatus.UP_TO_DATE)


def merge_onto(
    remote: Path,
    head: str,
    target_branch: str,
    *,
    expected_target: str,
    identity: GitIdentity,
    when: int,
    message: str | None = None,
    fast_forward: bool = True,
    scratch: Path | None = None,
    guard: Callable[[], None] | None = None,
) -> MergeResult:
    """Merge `head` into `target_branch` of `remote`, only if the branch is at `expected_target`.

    Args:
        remote: the bare repository.
        head: the commit to merge (must be reachable from a ref of `remote`).
        target_branch: the branch to advance.
        expected_target: the SHA the caller verified the branch at (the optimistic check).
        identity, when: author/committer and time of a merge commit, for reproducible SHAs.
        message: merge commit message (a default names both SHAs).
        fast_forward: advance the branch to `head` itself when possible, so the promoted state
            is exactly the one the checks verified.
        scratch: where to make the temporary clone.
        guard: runs just before the push and may raise to stop it (e.g. the lease was lost).
    """
    workdir = Path(tempfile.mkdtemp(prefix="sdlcflow-merge-", dir=scratch))
    try:
        clone = workdir / "repo.git"
        git(["clone", "--quiet", "--bare", str(remote), str(clone)], cwd=workdir)
        head_sha, base_sha = resolve(clone, head), resolve(clone, expected_target)
        actual = branch_head(remote, target_branch)
        planned = _plan(clone, head_sha, base_sha, identity, when, message, fast_forward)
        result = MergeResult(
            status=planned.status,
            target_branch=target_branch,
            expected_target=base_sha,
            head=head_sha,
            result_sha=planned.sha,
            actual_target=actual,
            conflicts=planned.conflicts,
            messages=planned.messages,
        )
        if planned.sha is None:
            return result
        if guard is not None:
            guard()
        return _publish(clone, remote, result, planned.sha)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class _Plan:
    status: MergeStatus
    sha: str | None
    conflicts: tuple[ConflictedPath, ...] = ()
    messages: tuple[str, ...] = ()


def _plan(
    clone: Path,
    head: str,
    base: str,
    identity: GitIdentity,
    when: int,
    message: str | None,
    fast_forward: bool,
) -> _Plan:
    """What merging `head` onto `base` produces, computed without touching the remote."""
    if is_ancestor(clone, head, base):
        return _Plan(MergeStatus.UP_TO_DATE, base)
    if fast_forward and is_ancestor(clone, base, head):
        return _Plan(MergeStatus.FAST_FORWARD, head)
    merged = git(
        ["merge-tree", "--write-tree", "-z", "--messages", base, head], cwd=clone, check=False
    )
    if merged.returncode not in (0, 1):
        raise GitError(f"git merge-tree of {head} onto {base} failed: {merged.stderr!r}")
    tree, entries, messages = _parse_merge_tree(merged.text)
    if merged.returncode == 1:
        return _Plan(
            MergeStatus.CONFLICT,
            None,
            _conflicts(clone, tree, entries, messages),
            tuple(text for _, _, text in messages),
        )
    text = message or f"Merge {head} into {base}"
    commit = git(
        ["commit-tree", tree, "-p", base, "-p", head, "-m", text],
        cwd=clone,
        identity=identity,
        when=when,
    )
    return _Plan(MergeStatus.MERGED, commit.text.strip(), (), tuple(t for _, _, t in messages))


def _publish(clone: Path, remote: Path, result: MergeResult, sha: str) -> MergeResult:
    """Move the target from the expected SHA to `sha` with compare-and-swap semantics."""
    if result.status is MergeStatus.UP_TO_DATE:
        if result.actual_target == result.expected_target:
            return result
        return _moved(result)
    pushed = push_cas(clone, remote, sha, result.target_branch, expected=result.expected_target)
    if pushed is PushStatus.STALE:
        return _moved(result)
    return result


def _moved(result: MergeResult) -> MergeResult:
    return MergeResult(
        status=MergeStatus.TARGET_MOVED,
        target_branch=result.target_branch,
        expected_target=result.expected_target,
        head=result.head,
        result_sha=None,
        actual_target=result.actual_target,
        conflicts=(),
        messages=(
            f"{result.target_branch} is at {result.actual_target}, not at the expected "
            f"{result.expected_target}; re-verify the new target and merge again",
        ),
    )


_Entry = tuple[int, str]  # (stage, path)
_Message = tuple[tuple[str, ...], str, str]  # (paths, conflict type, text)


def _parse_merge_tree(out: str) -> tuple[str, list[_Entry], list[_Message]]:
    """Split `git merge-tree --write-tree -z --messages` output into its three sections."""
    fields = out.split("\0")
    tree, rest = fields[0].strip(), fields[1:]
    entries: list[_Entry] = []
    while rest and rest[0]:
        info, path = rest.pop(0).split("\t", 1)
        entries.append((int(info.split()[2]), path))
    if rest:
        rest.pop(0)  # the empty field ending the conflicted-file section
    messages: list[_Message] = []
    while len(rest) > 1 and rest[0]:
        count = int(rest.pop(0))
        paths = tuple(rest.pop(0) for _ in range(count))
        kind, text = rest.pop(0), rest.pop(0).strip()
        messages.append((paths, kind, text))
    return tree, entries, messages


def _conflicts(
    clone: Path, tree: str, entries: list[_Entry], messages: list[_Message]
) -> tuple[ConflictedPath, ...]:
    paths = sorted({path for _, path in entries})
    found = []
    for path in paths:
        kinds = tuple(
            sorted({kind for ps, kind, _ in messages if path in ps and kind.startswith("CONFLICT")})
        )
        stages = tuple(sorted({stage for stage, p in entries if p == path}))
        blob = git(["cat-file", "blob", f"{tree}:{path}"], cwd=clone, check=False)
        text = blob.text if blob.returncode == 0 else ""
        found.append(ConflictedPath(path=path, kinds=kinds, stages=stages, hunks=parse_hunks(text)))
    return tuple(found)


def parse_hunks(text: str) -> tuple[ConflictHunk, ...]:
    """Conflict hunks of a file written with diff3-style markers."""
    hunks: list[ConflictHunk] = []
    parts: dict[str, list[str]] = {}
    section: str | None = None
    start = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line[:8]
        if marker == "<<<<<<< " or line.rstrip("\n") == "<<<<<<<":
            section, start, parts = "ours", number, {"ours": [], "base": [], "theirs": []}
        elif section is not None and (marker == "||||||| " or line.rstrip("\n") == "|||||||"):
            section = "base"
        elif section is not None and line.rstrip("\n") == "=======":
            section = "theirs"
        elif section is not None and (marker == ">>>>>>> " or line.rstrip("\n") == ">>>>>>>"):
            hunks.append(
                ConflictHunk(
                    start_line=start,
                    ours="".join(parts["ours"]),
                    base="".join(parts["base"]),
                    theirs="".join(parts["theirs"]),
                )
            )
            section = None
        elif section is not None:
            parts[section].append(line)
    return tuple(hunks)
