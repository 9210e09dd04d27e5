"""The dependency-update capability: pin the package the change asks for in the requirements
and the lockfile, on a branch cut from the leased head, pushed with a compare-and-swap.

What to bump comes from the change's labels: exactly one `upgrade:<package>==<version>`. The
branch is `deps/<package>-<version>`; the commit's time is the leased head's, so a re-run makes
the same commit and finds the branch already there. The result binds the new head SHA and the
new lockfile digest (the SDK binds them to the input SHAs and the epoch).
"""

from __future__ import annotations

from sdlcflow.agents._context import TaskContext, context
from sdlcflow.agents._decorator import agent
from sdlcflow.agents._errors import TaskFailure
from sdlcflow.agents._result import TaskResult
from sdlcflow.agents.bindings._runtime import (
    BindingConfigError,
    remote_for,
    required_input,
    workspace_for,
)
from sdlcflow.agents.reference import DependencyUpdateInput, update_dependency
from sdlcflow.agents.reference._requirements import normalize
from sdlcflow.core.events import ArtifactRef, Outputs, TaskContract

UPGRADE_LABEL = "upgrade:"


def wanted_upgrade(ctx: TaskContext) -> tuple[str, str]:
    """(package, version) from the change's one `upgrade:<package>==<version>` label."""
    labels = ctx.change.labels if ctx.change is not None else ()
    asks = [label[len(UPGRADE_LABEL) :] for label in labels if label.startswith(UPGRADE_LABEL)]
    if len(asks) != 1 or asks[0].count("==") != 1:
        raise BindingConfigError(
            f"task {ctx.task_id} needs exactly one label `{UPGRADE_LABEL}<package>==<version>` "
            f"on its change (found {asks or 'none'}); submit it with "
            f"`--label {UPGRADE_LABEL}pyjwt==2.9.0`"
        )
    package, version = (part.strip() for part in asks[0].split("=="))
    if not package or not version:
        raise BindingConfigError(f"label {UPGRADE_LABEL}{asks[0]} names no package or version")
    return package, version


@agent("dependency-update")
def dependency_update_agent(task: TaskContract) -> TaskResult:
    """Bump the asked-for pin on `deps/<package>-<version>`; report the new head and lockfile."""
    ctx = context()
    head = required_input(ctx, "head")
    package, version = wanted_upgrade(ctx)
    branch = f"deps/{normalize(package)}-{version}"
    request = DependencyUpdateInput(remote_for(ctx.repo), head, branch, package, version)
    result = update_dependency(request, workspace_for(ctx))
    ctx.ensure_live()
    if result.push is not None and not result.published:
        raise TaskFailure(
            f"branch {branch} already holds other work (push {result.push.value}); nothing was "
            "written. Delete or rename that branch, then retry the change",
            retryable=False,
        )
    return TaskResult(
        touched=Outputs(paths=result.paths),
        artifacts=(
            ArtifactRef("head", result.head),
            ArtifactRef("lockfile", result.lockfile_digest),
        ),
    )
