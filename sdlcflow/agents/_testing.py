"""Run an agent without Kafka, like Temporal's ActivityEnvironment: contract in, outcome out.

    env = AgentEnvironment(on_heartbeat=lambda details: env.lose_lease("revoked"))
    outcome = env.run(my_agent, task_contract("lint"))
    assert isinstance(outcome, Lost) and outcome.compensated

The handler runs through the same code path as under a Worker (lease race, fencing,
compensation), so a test that passes here exercises what runs in production.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sdlcflow.agents._context import LeaseInfo, LeaseSignal, TaskContext, Workdir, task_logger
from sdlcflow.agents._decorator import definition_of
from sdlcflow.agents._execution import DEFAULT_STOP_GRACE_S, Outcome, execute
from sdlcflow.core.events import (
    ArtifactRef,
    Authority,
    Backoff,
    ChangeFacts,
    Outputs,
    TaskContract,
)
from sdlcflow.tracing import new_trace_id

log = logging.getLogger("sdlcflow.agents.testing")


def task_contract(
    capability: str,
    *,
    change_id: str = "change-1",
    step: str | None = None,
    head: str = "h" * 40,
    base: str = "b" * 40,
    lockfile: str = "",
    outputs: Outputs | None = None,
    timeout_ms: int = 60_000,
    compensation: str | None = None,
    max_attempts: int = 3,
) -> TaskContract:
    """A contract as the planner would make it, with defaults for everything a test ignores."""
    step = step or capability
    return TaskContract(
        id=f"{change_id}/{step}",
        step=step,
        capability=capability,
        needs=(),
        inputs=(
            ArtifactRef("base", base),
            ArtifactRef("head", head),
            ArtifactRef("lockfile", lockfile),
        ),
        outputs=outputs or Outputs(),
        preconditions=(),
        when="",
        timeout_ms=timeout_ms,
        authority=Authority.AGENT,
        approvals_required=0,
        max_attempts=max_attempts,
        backoff=Backoff(1000, 60_000, 0.2),
        compensation=compensation,
    )


class AgentEnvironment:
    """A fake lease and context for running one agent function in a test.

    Args:
        repo: the repository the task belongs to (`context().repo`).
        epoch: the lease's fencing epoch.
        attempt: the attempt number the lease was granted for.
        on_heartbeat: called with the details of every `heartbeat()` the handler makes; may
            call `lose_lease()` to simulate a revocation at that point.
        workdir: the task's working directory (default: a fresh temporary one, removed after).
        stop_grace_s: how long a sync handler gets to stop after the lease is lost.
        change: the change's facts (kind, labels, ...) as the offer carries them.
        policy_modes: the policy modes ops set (policy -> enforced) as the offer carries them.
    """

    def __init__(
        self,
        *,
        repo: str = "acme/service",
        epoch: int = 1,
        attempt: int = 1,
        on_heartbeat: Callable[[tuple[Any, ...]], None] | None = None,
        workdir: Path | None = None,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        change: ChangeFacts | None = None,
        policy_modes: Mapping[str, bool] | None = None,
    ) -> None:
        self.repo = repo
        self.change = change
        self.policy_modes: Mapping[str, bool] = policy_modes or {}
        self.epoch = epoch
        self.attempt = attempt
        self.on_heartbeat = on_heartbeat
        self.workdir = workdir
        self.stop_grace_s = stop_grace_s
        self.heartbeats: list[tuple[Any, ...]] = []
        self.lease_id = str(uuid.uuid4())
        self._signal = LeaseSignal()
        self.context: TaskContext | None = None

    def lose_lease(self, reason: str = "revoked by the test") -> None:
        """Simulate a lost lease: the handler is cancelled and compensation runs."""
        self._signal.set(reason)

    def run(self, fn: Callable[..., Any], contract: TaskContract) -> Outcome:
        """Run `fn` (an @agent function) on `contract` to completion; return its outcome."""
        return asyncio.run(self.run_async(fn, contract))

    async def run_async(self, fn: Callable[..., Any], contract: TaskContract) -> Outcome:
        """`run` for tests that already have an event loop."""
        definition = definition_of(fn)
        workdir = (
            Workdir.at(self.workdir)
            if self.workdir is not None
            else Workdir(None, "sdlcflow-agent-test-")
        )
        ctx = self._context(contract, workdir)
        try:
            return await execute(definition, ctx, stop_grace_s=self.stop_grace_s)
        finally:
            workdir.remove()

    def _context(self, contract: TaskContract, workdir: Workdir) -> TaskContext:
        trace_id = new_trace_id()
        lease = LeaseInfo(self.lease_id, self.epoch, 2**62, self.attempt, contract.inputs)
        change_id = contract.id.rpartition("/")[0] or contract.id
        self.context = TaskContext(
            contract=contract,
            repo=self.repo,
            change_id=change_id,
            trace_id=trace_id,
            lease=lease,
            scratch=workdir,
            logger=task_logger(
                log,
                trace_id=trace_id,
                task_id=contract.id,
                change_id=change_id,
                lease_id=self.lease_id,
            ),
            lost=self._signal,
            heartbeater=self._heartbeat,
            change=self.change,
            policy_modes=self.policy_modes,
        )
        return self.context

    def _heartbeat(self, details: tuple[Any, ...]) -> None:
        self.heartbeats.append(details)
        if self.on_heartbeat is not None:
            self.on_heartbeat(details)
