"""The merge capability: land the verified head on the target branch, only if that branch is
still at the base SHA every check saw (the optimistic check, done by git compare-and-swap).

The target branch is SDLCFLOW_MERGE_TARGET (default `main`). Re-running a merge that already
landed finds it done (same commit, same SHA), so the binding is idempotent.
"""

from __future__ import annotations

import os

from sdlcflow.agents._context import context
from sdlcflow.agents._decorator import agent
from sdlcflow.agents._errors import TaskFailure
from sdlcflow.agents._result import TaskResult
from sdlcflow.agents.bindings._runtime import remote_for, required_input, workspace_for
from sdlcflow.agents.reference import MergeInput, merge
from sdlcflow.core.events import ArtifactRef, TaskContract
from sdlcflow.gitops import MergeStatus

TARGET_ENV = "SDLCFLOW_MERGE_TARGET"
DEFAULT_TARGET = "main"


def merge_target() -> str:
    """The branch merges land on."""
    return os.environ.get(TARGET_ENV, "").strip() or DEFAULT_TARGET


@agent("merge")
def merge_agent(task: TaskContract) -> TaskResult:
    """Merge head onto the target branch expected at base; conflicts and a moved target fail."""
    ctx = context()
    head, base = required_input(ctx, "head"), required_input(ctx, "base")
    workspace = workspace_for(ctx)
    request = MergeInput(remote_for(ctx.repo), head, merge_target(), expected_target=base)
    result = merge(request, workspace)
    landed = result.merge
    if landed.status is MergeStatus.CONFLICT:
        raise TaskFailure(
            f"{head} conflicts with {landed.target_branch} at {base} in "
            f"{len(landed.conflicts)} path(s); report {result.conflict_report}. Rebase the change",
            retryable=False,
        )
    if landed.status is MergeStatus.TARGET_MOVED:
        raise TaskFailure(
            f"{landed.target_branch} is at {landed.actual_target}, not the verified {base}; "
            "nothing was merged. Update the change onto the new target so its checks re-run",
            retryable=False,
        )
    artifacts: tuple[ArtifactRef, ...] = (ArtifactRef("merged", landed.result_sha or head),)
    if result.conflict_report is not None:
        artifacts += (ArtifactRef("conflict-report", result.conflict_report),)
    return TaskResult(touched=task.outputs, artifacts=artifacts)
