"""Run one handler under its lease: race it against lease loss, fence its result, compensate.

Shared by the Worker and the test harness, so what users test is what runs in production.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from sdlcflow.agents._context import TaskContext, bound
from sdlcflow.agents._decorator import AgentDefinition, LeaseLoss
from sdlcflow.agents._errors import LeaseLostError, TaskFailure
from sdlcflow.agents._result import TaskResult, as_task_result

# How long a sync handler (a thread, which cannot be killed) gets to notice a lost lease and
# stop before compensation runs anyway.
DEFAULT_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Succeeded:
    result: TaskResult
    value: Any


@dataclass(frozen=True)
class Failed:
    error: str
    retryable: bool


@dataclass(frozen=True)
class Lost:
    """The lease was lost; the handler's result (if any) was discarded."""

    reason: str
    compensated: bool
    compensation_error: str = ""


Outcome = Succeeded | Failed | Lost


async def execute(
    definition: AgentDefinition, ctx: TaskContext, *, stop_grace_s: float = DEFAULT_STOP_GRACE_S
) -> Outcome:
    """Run the handler; a lost lease cancels it, runs compensation, and yields `Lost`."""
    work = asyncio.ensure_future(_call(definition, ctx))
    lost = asyncio.ensure_future(ctx.lost.wait())
    try:
        await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        lost.cancel()
        raise
    lost.cancel()
    if not ctx.lost.is_set():
        return _outcome(work)
    await _stop(work, definition, stop_grace_s, ctx)
    return await compensate(definition, ctx, ctx.lost.reason)


def _outcome(work: asyncio.Future[Any]) -> Outcome:
    error = work.exception()
    if error is None:
        value = work.result()
        try:
            return Succeeded(as_task_result(value), value)
        except TypeError as exc:
            return Failed(str(exc), retryable=False)
    if isinstance(error, TaskFailure):
        return Failed(str(error), error.retryable)
    if isinstance(error, LeaseLostError):  # raced: the handler noticed before we did
        return Failed(str(error), retryable=True)
    return Failed(f"{type(error).__name__}: {error}", retryable=True)


async def _call(definition: AgentDefinition, ctx: TaskContext) -> Any:
    with bound(ctx):
        if definition.is_async:
            return await definition.handler(ctx.contract)
        return await asyncio.to_thread(definition.handler, ctx.contract)  # copies the context


async def _stop(
    work: asyncio.Future[Any], definition: AgentDefinition, grace_s: float, ctx: TaskContext
) -> None:
    """Cancel an async handler; give a sync one `grace_s` to notice the signal and return."""
    if definition.is_async:
        work.cancel()
    done, _ = await asyncio.wait({work}, timeout=grace_s)
    if not done:
        ctx.logger.warning(
            "handler still running %.1f s after the lease was lost; compensating anyway", grace_s
        )
    else:
        with contextlib.suppress(BaseException):
            work.result()  # consume its outcome: it is discarded, never published


async def compensate(definition: AgentDefinition, ctx: TaskContext, reason: str) -> Lost:
    """Run the user's compensation hook for a lost lease (with the task context bound)."""
    hook = definition.compensate
    if hook is None:
        return Lost(reason, compensated=False)
    loss = LeaseLoss(ctx.lease.lease_id, ctx.lease.epoch, reason, ctx.contract.compensation)
    try:
        with bound(ctx):
            if definition.compensate_is_async:
                await hook(ctx.contract, loss)  # type: ignore[misc]
            else:
                await asyncio.to_thread(hook, ctx.contract, loss)
    except Exception as exc:  # a failing hook is reported, not raised: the loss stands
        ctx.logger.exception("compensation hook failed for lease %s", ctx.lease.lease_id)
        return Lost(reason, compensated=False, compensation_error=f"{type(exc).__name__}: {exc}")
    return Lost(reason, compensated=True)
