"""Git operations on local bare repositories that stand in for remotes.

Clones are fresh temp directories, commits carry explicit identity and time (same inputs, same
SHAs), and every branch update is a compare-and-swap, so concurrent agents are told when they
lost a race instead of overwriting each other.
"""

from sdlcflow.gitops._archive import tree_archive, tree_files
from sdlcflow.gitops._git import GitError, GitIdentity, RefNotFound, git
from sdlcflow.gitops._merge import (
    ConflictedPath,
    ConflictHunk,
    MergeResult,
    MergeStatus,
    merge_onto,
    parse_hunks,
)
from sdlcflow.gitops._repo import (
    Checkout,
    CommitOutcome,
    Diff,
    GrepHit,
    PushStatus,
    branch_head,
    checkout,
    clone_at,
    commit_all,
    commit_and_push,
    commit_change,
    commit_time,
    create_remote,
    diff,
    grep_word,
    init_bare,
    is_ancestor,
    list_files,
    push_cas,
    read_blob,
    resolve,
)

__all__ = [
    "Checkout",
    "CommitOutcome",
    "ConflictHunk",
    "ConflictedPath",
    "Diff",
    "GitError",
    "GitIdentity",
    "GrepHit",
    "MergeResult",
    "MergeStatus",
    "PushStatus",
    "RefNotFound",
    "branch_head",
    "checkout",
    "clone_at",
    "commit_all",
    "commit_and_push",
    "commit_change",
    "commit_time",
    "create_remote",
    "diff",
    "git",
    "grep_word",
    "init_bare",
    "is_ancestor",
    "list_files",
    "merge_onto",
    "parse_hunks",
    "push_cas",
    "read_blob",
    "resolve",
    "tree_archive",
    "tree_files",
]
