"""The merge agent: three-way merge of a verified head onto the target branch, only if the
target is still at the SHA the checks saw. Conflicts are reported as hunks (and stored as a
JSON artifact for reviewers); nothing is ever overwritten."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sdlcflow.agents.reference._workspace import Workspace, agent_identity
from sdlcflow.gitops import GitIdentity, MergeResult, commit_time, merge_onto, resolve


@dataclass(frozen=True)
class MergeInput:
    remote: Path
    head: str
    target_branch: str
    expected_target: str
    identity: GitIdentity = field(default_factory=lambda: agent_identity("merge"))
    merged_at: int | None = None  # default: the later of the two commits' times (reproducible)
    fast_forward: bool = True


@dataclass(frozen=True)
class MergeAgentResult:
    merge: MergeResult
    conflict_report: str | None  # digest of the JSON conflict report, when there were conflicts

    def outputs(self) -> dict[str, str]:
        outputs = {
            "status": self.merge.status.value,
            "head": self.merge.head,
            "target_branch": self.merge.target_branch,
            "expected_target": self.merge.expected_target,
            "result_sha": self.merge.result_sha or "",
        }
        if self.conflict_report is not None:
            outputs["conflict_report"] = self.conflict_report
        return outputs


def merge(request: MergeInput, workspace: Workspace) -> MergeAgentResult:
    """Merge `request.head` onto `request.target_branch` with the optimistic target check."""
    workspace.ensure_live()
    when = request.merged_at
    if when is None:
        head, target = (
            resolve(request.remote, request.head),
            resolve(request.remote, request.expected_target),
        )
        when = max(commit_time(request.remote, head), commit_time(request.remote, target))
    result = merge_onto(
        request.remote,
        request.head,
        request.target_branch,
        expected_target=request.expected_target,
        identity=request.identity,
        when=when,
        fast_forward=request.fast_forward,
        scratch=workspace.scratch,
        guard=workspace.ensure_live,
    )
    report = None
    if result.conflicts:
        body = {
            "head": result.head,
            "target": result.expected_target,
            "conflicts": [asdict(conflict) for conflict in result.conflicts],
        }
        report = workspace.store.put(json.dumps(body, sort_keys=True, indent=1).encode() + b"\n")
    return MergeAgentResult(merge=result, conflict_report=report)
