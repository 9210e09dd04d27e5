"""What a handler returns: the facts a TaskSucceeded carries beyond the lease and the inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sdlcflow.core.events import ArtifactRef, Outputs, PolicyOutcome, VerifiedState


@dataclass(frozen=True)
class TaskResult:
    """A handler's result as the coordinator sees it.

    `verified` defaults to the state the lease was granted on (its base, head and lockfile
    inputs): a check that succeeded verified exactly what it was given. Set it when the task
    established more (an artifact digest, a policy revision).
    """

    touched: Outputs = field(default_factory=Outputs)
    artifacts: tuple[ArtifactRef, ...] = ()
    verified: VerifiedState | None = None
    policy: PolicyOutcome | None = None


@runtime_checkable
class ReportsTaskResult(Protocol):
    """A result dataclass of the user's own that knows how to say what it means to sdlcflow."""

    def task_result(self) -> TaskResult: ...


def as_task_result(value: object) -> TaskResult:
    """The TaskResult a handler's return value stands for (None: nothing beyond success)."""
    if value is None:
        return TaskResult()
    if isinstance(value, TaskResult):
        return value
    if isinstance(value, ReportsTaskResult):
        return value.task_result()
    raise TypeError(
        f"handler returned {type(value).__name__}, which is neither TaskResult nor has a "
        "`task_result()` method; return TaskResult(...) or add `def task_result(self)`"
    )
