"""The deploy and promote capabilities: release the leased head to the contract's environments.

`deploy` (the deployment template's staging and prod steps) and `promote` (the code-change
template's last step) do the same work: build the head's deterministic artifact, stage it,
smoke-check it with the environment's config and flip only when the check passes. Releases are
recorded in SDLCFLOW_DATA_DIR/artifacts/envs; a repeated run finds the release already active.
The compensation (`rollback-deploy`) restores the previous release if this lease flipped it.
"""

from __future__ import annotations

import time

from sdlcflow.agents._context import TaskContext, context
from sdlcflow.agents._decorator import LeaseLoss, agent
from sdlcflow.agents._errors import TaskFailure
from sdlcflow.agents._result import TaskResult
from sdlcflow.agents.bindings._runtime import (
    BindingConfigError,
    artifact_store,
    environments_of,
    remote_for,
    required_input,
    workspace_for,
)
from sdlcflow.agents.reference import DeployInput, DeployResult, deploy
from sdlcflow.artifacts import ReleaseAction, ReleaseError, Releases
from sdlcflow.core.events import ArtifactRef, TaskContract, VerifiedState


def deployer_id(ctx: TaskContext) -> str:
    """Who a release record names: the capability and the lease (attributable, per lease)."""
    return f"{ctx.contract.capability}-agent/lease:{ctx.lease.lease_id}"


def release_contract(task: TaskContract) -> TaskResult:
    """Deploy the leased head to every environment the contract declares."""
    ctx = context()
    head, base = required_input(ctx, "head"), required_input(ctx, "base")
    workspace = workspace_for(ctx)
    results: list[DeployResult] = []
    for env in environments_of(task):
        request = DeployInput(
            remote=remote_for(ctx.repo),
            sha=head,
            env=env,
            by=deployer_id(ctx),
            at=int(time.time() * 1000),
            why=f"{task.id} of {ctx.repo}",
        )
        try:
            result = deploy(request, workspace)
        except ReleaseError as exc:
            raise BindingConfigError(str(exc)) from exc
        if not result.live:
            raise TaskFailure(
                f"{head} was not released to {env}: {result.action.value} (smoke log "
                f"{result.smoke_log}); {env} still serves {result.active_sha or 'nothing'}",
                retryable=False,
            )
        results.append(result)
    ctx.ensure_live()
    artifact = results[0].artifact
    return TaskResult(
        touched=task.outputs,
        artifacts=(
            ArtifactRef("artifact", artifact),
            *(ArtifactRef(f"release:{r.env}", str(r.release_seq)) for r in results),
        ),
        verified=VerifiedState(
            head_sha=head,
            base_sha=base,
            lockfile_digest=ctx.lease.input("lockfile"),
            artifact_digest=artifact,
        ),
    )


def roll_back_own_releases(task: TaskContract, loss: LeaseLoss) -> None:
    """Undo the switch this lease made, where it is still the active release."""
    ctx = context()
    releases = Releases(artifact_store())
    mine = deployer_id(ctx)
    for env in task.outputs.environments:
        try:
            current = releases.current(env)
        except ReleaseError:
            continue
        if current is None or current.by != mine or current.action is not ReleaseAction.ACTIVATED:
            continue
        try:
            releases.rollback(
                env, by=mine, at=int(time.time() * 1000), why=f"lease lost: {loss.reason}"
            )
        except ReleaseError:
            ctx.logger.warning("%s had no earlier release; %s stays active", env, mine)


@agent("deploy", compensate=roll_back_own_releases)
def deploy_agent(task: TaskContract) -> TaskResult:
    """Release the leased head to the step's environment (staging or prod)."""
    return release_contract(task)


@agent("promote", compensate=roll_back_own_releases)
def promote_agent(task: TaskContract) -> TaskResult:
    """Promote the merged, verified head to the environments the change declares."""
    return release_contract(task)
