"""AgentEnvironment runs handlers through the production path: fencing, loss, compensation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sdlcflow.agents import (
    AgentEnvironment,
    ArtifactRef,
    Failed,
    LeaseLoss,
    Lost,
    Succeeded,
    TaskContract,
    TaskFailure,
    TaskResult,
    agent,
    context,
    heartbeat,
    lease_lost,
    task_contract,
)

WRITES: list[str] = []
COMPENSATIONS: list[LeaseLoss] = []


def undo(task: TaskContract, loss: LeaseLoss) -> None:
    COMPENSATIONS.append(loss)


@agent("lint")
def passes(task: TaskContract) -> TaskResult:
    ctx = context()
    (ctx.workdir / "report.json").write_text("{}")
    return TaskResult(artifacts=(ArtifactRef("report", ctx.lease.input("head")),))


@agent("lint")
def finds_problems(task: TaskContract) -> TaskResult:
    raise TaskFailure("3 findings", retryable=False)


@agent("lint")
def crashes(task: TaskContract) -> TaskResult:
    raise RuntimeError("disk full")


@agent("merge", compensate=undo)
async def async_writer(task: TaskContract) -> TaskResult:
    WRITES.append("before")
    heartbeat("merging")
    await asyncio.sleep(30)  # cancelled by the lost lease long before this ends
    WRITES.append("after")
    return TaskResult()


STOPPED = threading.Event()


@agent("merge", compensate=undo)
def sync_writer(task: TaskContract) -> TaskResult:
    heartbeat("step 1")
    ctx = context()
    assert ctx.lost.event.wait(timeout=30)  # a sandbox would be killed by this event
    STOPPED.set()
    return TaskResult()  # returned after the loss: must be discarded


@agent("merge", compensate=lambda task, loss: (_ for _ in ()).throw(OSError("remote gone")))
async def with_broken_hook(task: TaskContract) -> TaskResult:
    heartbeat()
    await asyncio.sleep(30)
    return TaskResult()


class TestAgentEnvironmentOutcomes:
    """Returned values, TaskFailure and crashes become Succeeded or Failed outcomes."""

    def test_success_carries_the_result_and_runs_in_a_fresh_workdir(self) -> None:
        env = AgentEnvironment()
        outcome = env.run(passes, task_contract("lint", head="abc"))
        assert isinstance(outcome, Succeeded)
        assert outcome.result.artifacts == (ArtifactRef("report", "abc"),)
        assert env.context is not None and not Path(env.context.workdir).exists()

    def test_task_failure_keeps_its_retryable_flag(self) -> None:
        outcome = AgentEnvironment().run(finds_problems, task_contract("lint"))
        assert outcome == Failed("3 findings", retryable=False)

    def test_unexpected_exceptions_are_retryable_failures(self) -> None:
        outcome = AgentEnvironment().run(crashes, task_contract("lint"))
        assert outcome == Failed("RuntimeError: disk full", retryable=True)


class TestLeaseLoss:
    """A lost lease stops the handler, discards its result and runs the compensation hook."""

    def test_async_handler_is_cancelled_and_never_writes_after_loss(self) -> None:
        WRITES.clear()
        COMPENSATIONS.clear()
        env = AgentEnvironment(on_heartbeat=lambda _d: env.lose_lease("revoked: HEAD_MOVED"))
        outcome = env.run(async_writer, task_contract("merge", compensation="revert-merge"))
        assert outcome == Lost("revoked: HEAD_MOVED", compensated=True)
        assert WRITES == ["before"]
        assert [(c.reason, c.compensation) for c in COMPENSATIONS] == [
            ("revoked: HEAD_MOVED", "revert-merge")
        ]

    def test_sync_handler_sees_the_signal_and_its_late_result_is_discarded(self) -> None:
        STOPPED.clear()
        COMPENSATIONS.clear()
        env = AgentEnvironment(on_heartbeat=lambda _d: env.lose_lease("expired"))
        outcome = env.run(sync_writer, task_contract("merge"))
        assert STOPPED.is_set()
        assert isinstance(outcome, Lost) and outcome.compensated
        assert [c.reason for c in COMPENSATIONS] == ["expired"]

    def test_a_failing_hook_is_reported_not_raised(self) -> None:
        env = AgentEnvironment(on_heartbeat=lambda _d: env.lose_lease("revoked"))
        outcome = env.run(with_broken_hook, task_contract("merge"))
        assert outcome == Lost(
            "revoked", compensated=False, compensation_error="OSError: remote gone"
        )

    def test_lease_lost_reads_true_inside_the_handler_after_loss(self) -> None:
        seen: list[bool] = []

        @agent("lint")
        def probe(task: TaskContract) -> TaskResult:
            seen.append(lease_lost())
            heartbeat()
            seen.append(lease_lost())
            return TaskResult()

        env = AgentEnvironment(on_heartbeat=lambda _d: env.lose_lease())
        env.run(probe, task_contract("lint"))
        assert seen == [False, True]
        assert env.heartbeats == [()]
