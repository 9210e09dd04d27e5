"""The policy capability: collect the policy input from the repository at the leased SHAs,
evaluate the bundle, and report the decision with its evidence.

The bundle is SDLCFLOW_POLICY_BUNDLE (default: the one shipped in sdlcflow/policies); policies
run in enforce mode unless SDLCFLOW_POLICY_MODE=audit, except those whose mode ops switched
(`sdlcflow policy mode`): the offer carries those modes and they win over the default. Test
results come from what the test step recorded for the same head SHA (none recorded: the
tests-on-head policy says so). The evidence bundle a reviewer signs (diff, test results, policy
evidence, replay command) is assembled here and stored by its digest, which the coordinator
copies into ApprovalRequested.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdlcflow.agents._context import TaskContext, context
from sdlcflow.agents._decorator import agent
from sdlcflow.agents._result import TaskResult
from sdlcflow.agents.bindings._runtime import (
    BindingConfigError,
    check_results,
    data_dir,
    remote_for,
    required_input,
    workspace_for,
)
from sdlcflow.agents.reference import PolicyInputRequest, PolicyInputs, collect_policy_inputs
from sdlcflow.approvals.evidence import (
    EvidenceRequest,
    EvidenceStore,
    assemble_evidence,
    default_evidence_root,
)
from sdlcflow.core.events import (
    ALL_POLICIES,
    ArtifactRef,
    ChangeFacts,
    PolicyOutcome,
    TaskContract,
    VerifiedState,
)
from sdlcflow.policy import inputs as model
from sdlcflow.policy.decision import BundleDecision, Outcome
from sdlcflow.policy.engine import PolicyEngine
from sdlcflow.policy.modes import Mode, ModeChange, PolicyModes

BUNDLE_ENV = "SDLCFLOW_POLICY_BUNDLE"
MODE_ENV = "SDLCFLOW_POLICY_MODE"
# who a mode taken from the offer is attributed to (the switch itself is on record as
# PolicyModeChanged / PolicyModeSet with the operator, time and reason)
OFFERED_BY = "coordinator-offer"
SHIPPED_BUNDLE = Path(__file__).resolve().parents[2] / "policies"


def bundle_root() -> Path:
    """The policy bundle this agent evaluates."""
    given = os.environ.get(BUNDLE_ENV, "").strip()
    return Path(given) if given else SHIPPED_BUNDLE


def policy_modes(offered: Mapping[str, bool] | None = None) -> PolicyModes:
    """Enforce unless the operator runs this agent in audit mode; the modes the offer carries
    (policy -> enforced, as ops switched them) win for the policies they name."""
    raw = os.environ.get(MODE_ENV, "").strip().lower() or Mode.ENFORCE.value
    try:
        modes = PolicyModes(default=Mode(raw))
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise BindingConfigError(
            f"{MODE_ENV}={raw!r} is not a mode; use one of {choices}"
        ) from None
    # `*` first, so a per-policy mode set after it still wins (the coordinator drops the
    # per-policy ones a later `*` overrides)
    offered = offered or {}
    for policy in sorted(offered, key=lambda name: name != ALL_POLICIES):
        mode = Mode.ENFORCE if offered[policy] else Mode.AUDIT
        modes = modes.with_change(ModeChange(policy, mode, OFFERED_BY, 0))
    return modes


@functools.lru_cache(maxsize=4)
def engine_for(root: Path) -> PolicyEngine:
    """One compiled engine per bundle directory (compiling costs milliseconds, evaluating less)."""
    return PolicyEngine.load(root)


# Change kinds as producers spell them (`sdlcflow submit --kind`) -> the policy input's kinds.
KIND_ALIASES: dict[str, model.ChangeKind] = {
    "code-change": model.ChangeKind.CODE,
    "dependency-update": model.ChangeKind.DEPENDENCY,
    "dependency-upgrade": model.ChangeKind.DEPENDENCY,
    "deployment": model.ChangeKind.RELEASE,
}


def change_kind(kind: str) -> model.ChangeKind:
    """The policy input's kind for a change request's free-form kind (unknown ones: code, the
    declared kind itself stays in `extra.declared_kind` for policies that want it)."""
    normalised = kind.strip().lower()
    if normalised in KIND_ALIASES:
        return KIND_ALIASES[normalised]
    try:
        return model.ChangeKind(normalised)
    except ValueError:
        return model.ChangeKind.CODE


def policy_input(
    repo: str,
    change_id: str,
    lockfile: str,
    found: PolicyInputs,
    tests: tuple[dict[str, Any], ...],
    change: ChangeFacts | None = None,
) -> model.PolicyInput:
    """The policy INPUT document from what the collector found in git, the recorded tests and
    the change's own facts (kind, labels) as the offer carried them."""
    return model.PolicyInput(
        repo=repo,
        change_id=change_id,
        change_kind=change_kind(change.kind) if change is not None else model.ChangeKind.CODE,
        labels=change.labels if change is not None else (),
        extra={"declared_kind": change.kind} if change is not None else {},
        base_sha=found.base,
        head_sha=found.head,
        lockfile_digest=lockfile,
        files_changed=tuple(model.FileChange(path=path) for path in found.files_changed),
        dependency_changes=tuple(
            model.DependencyChange(
                name=dep.package, from_version=dep.old, to_version=dep.new, manifest=dep.source
            )
            for dep in found.dependency_changes
        ),
        env_var_changes=tuple(
            model.EnvVarChange(
                name=change.name,
                change=model.EnvVarChangeKind(change.kind),
                new_name=change.new_name,
            )
            for change in found.env_var_changes
        ),
        env_var_references=tuple(
            model.EnvVarReference(name=change.name, path=hit.path, line=hit.line)
            for change in found.env_var_changes
            for hit in change.still_referenced
        ),
        migrations=tuple(
            model.Migration(
                id=Path(m.path).name.split(".")[0],
                path=m.path,
                has_rollback=m.rollback_declared,
                rollback_path=m.rollback_path,
            )
            for m in found.migrations
        ),
        test_results=tuple(
            model.TestResult(suite=t["suite"], status=model.TestStatus(t["status"]), sha=t["sha"])
            for t in tests
        ),
    )


def is_enforced(decision: BundleDecision) -> bool:
    """Does the decision come from policies in enforce mode (so a FAIL blocks)?"""
    deciding = [p for p in decision.policies if p.effective is decision.outcome]
    if decision.outcome is Outcome.PASS:
        return all(p.mode is Mode.ENFORCE for p in decision.policies)
    return any(p.mode is Mode.ENFORCE for p in deciding)


def store_evidence(
    ctx: TaskContext, document: model.PolicyInput, decision: BundleDecision, remote: Path
) -> str:
    """Assemble the reviewer's evidence bundle and store it; returns its evidence digest."""
    tests: tuple[Mapping[str, Any], ...] = check_results(ctx.repo, document.head_sha)
    bundle = assemble_evidence(
        EvidenceRequest(
            repo=ctx.repo,
            change_id=ctx.change_id,
            remote=remote,
            base=document.base_sha,
            head=document.head_sha,
            lockfile_digest=document.lockfile_digest,
            test_results=tests,
            policy_decision=decision.model_dump(mode="json"),
            policy_bundle_digest=decision.bundle_digest,
            risk_score=decision.risk,
            required_approvals=max(1, decision.required_approvals),
        )
    )
    return EvidenceStore.at(default_evidence_root(data_dir())).put(bundle)


@agent("policy")
def policy_agent(task: TaskContract) -> TaskResult:
    """Evaluate the policy bundle on the change at the leased SHAs; report decision + evidence."""
    ctx = context()
    head, base = required_input(ctx, "head"), required_input(ctx, "base")
    lockfile = ctx.lease.input("lockfile")
    remote = remote_for(ctx.repo)
    workspace = workspace_for(ctx)
    found = collect_policy_inputs(PolicyInputRequest(remote, base, head), workspace)
    document = policy_input(
        ctx.repo, ctx.change_id, lockfile, found, check_results(ctx.repo, found.head), ctx.change
    )
    decision = engine_for(bundle_root()).evaluate(document, policy_modes(ctx.policy_modes))
    evidence = store_evidence(ctx, document, decision, remote)
    ctx.ensure_live()
    return TaskResult(
        artifacts=(ArtifactRef("policy-input", decision.input_digest),),
        verified=VerifiedState(
            head_sha=head,
            base_sha=base,
            lockfile_digest=lockfile,
            policy_revision=decision.bundle_digest,
        ),
        policy=PolicyOutcome(
            decision=decision.outcome,
            enforced=is_enforced(decision),
            policy_revision=decision.bundle_digest,
            evidence_digest=evidence,
            reasons=decision.reasons(),
            required_approvals=decision.required_approvals,
            evaluation=evaluation_record(document, decision),
        ),
    )


def evaluation_record(document: model.PolicyInput, decision: BundleDecision) -> str:
    """The input and the whole decision as one JSON line, the shape `policy backtest` reads."""
    record = {"input": document.document(), "decision": decision.model_dump(mode="json")}
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
