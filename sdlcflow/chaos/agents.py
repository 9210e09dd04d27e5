"""The agents of a chaos run: real SDK handlers whose work is a short pause, one per step of
the code-change pipeline. The pause keeps tasks in flight, so a kill or a SIGSTOP lands
mid-task; the SDK does the leasing, heartbeats and fencing as for any agent.

    sdlcflow run agent sdlcflow.chaos.agents:AGENTS --concurrency 4
"""

from __future__ import annotations

import asyncio
import random

from sdlcflow.agents import TaskContract, TaskResult, agent, ensure_live
from sdlcflow.core.events import PolicyDecision, PolicyOutcome

WORK_S = (0.05, 0.4)
POLICY_REVISION = "chaos-bundle-1"


async def _work() -> None:
    await asyncio.sleep(random.uniform(*WORK_S))
    ensure_live()  # a lease lost while working must not produce a result


@agent("lint")
async def lint(task: TaskContract) -> TaskResult:
    await _work()
    return TaskResult()


@agent("test")
async def run_tests(task: TaskContract) -> TaskResult:
    await _work()
    return TaskResult()


@agent("policy")
async def policy(task: TaskContract) -> TaskResult:
    await _work()
    outcome = PolicyOutcome(PolicyDecision.PASS, True, POLICY_REVISION, f"evidence:{task.id}")
    return TaskResult(policy=outcome)


@agent("merge")
async def merge(task: TaskContract) -> TaskResult:
    await _work()
    return TaskResult()


@agent("promote")
async def promote(task: TaskContract) -> TaskResult:
    await _work()
    return TaskResult()


AGENTS = [lint, run_tests, policy, merge, promote]
CAPABILITIES = ("lint", "test", "policy", "merge", "promote")
