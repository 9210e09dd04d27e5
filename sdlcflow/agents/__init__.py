"""The agent SDK: write an agent as a typed function, run it with a Worker, test it without Kafka.

    from sdlcflow.agents import TaskContract, TaskResult, Worker, agent, context

    @agent("lint")
    def lint(task: TaskContract) -> TaskResult:
        ctx = context()               # lease, trace id, workdir, logger, loss signal
        ...
        ctx.ensure_live()             # before every write that matters
        return TaskResult()

    async with Worker([lint], concurrency=4) as worker:
        await worker.run()

Leases are requested, heartbeated and fenced for you; a lost lease cancels the handler, runs
its compensation hook and never lets a result out. `AgentEnvironment` runs the same code path
in a unit test.
"""

from sdlcflow.agents._context import (
    LeaseInfo,
    TaskContext,
    context,
    ensure_live,
    heartbeat,
    in_task,
    lease_lost,
)
from sdlcflow.agents._decorator import AgentDefinition, LeaseLoss, agent, definition_of
from sdlcflow.agents._errors import (
    AgentDefinitionError,
    AgentError,
    IdentityError,
    LeaseLostError,
    NotInTaskError,
    TaskFailure,
)
from sdlcflow.agents._execution import Failed, Lost, Outcome, Succeeded
from sdlcflow.agents._identity import CREDENTIAL_ENV, KEY_ENV, AgentIdentity, read_claims
from sdlcflow.agents._result import ReportsTaskResult, TaskResult
from sdlcflow.agents._testing import AgentEnvironment, task_contract
from sdlcflow.agents._worker import Worker, WorkerStats
from sdlcflow.core.events import ArtifactRef, Outputs, PolicyOutcome, TaskContract, VerifiedState

__all__ = [
    "CREDENTIAL_ENV",
    "KEY_ENV",
    "AgentDefinition",
    "AgentDefinitionError",
    "AgentEnvironment",
    "AgentError",
    "AgentIdentity",
    "ArtifactRef",
    "Failed",
    "IdentityError",
    "LeaseInfo",
    "LeaseLoss",
    "LeaseLostError",
    "Lost",
    "NotInTaskError",
    "Outcome",
    "Outputs",
    "PolicyOutcome",
    "ReportsTaskResult",
    "Succeeded",
    "TaskContext",
    "TaskContract",
    "TaskFailure",
    "TaskResult",
    "VerifiedState",
    "Worker",
    "WorkerStats",
    "agent",
    "context",
    "definition_of",
    "ensure_live",
    "heartbeat",
    "in_task",
    "lease_lost",
    "read_claims",
    "task_contract",
]
