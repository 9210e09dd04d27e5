"""The benchmark's agents: SDK agents (@agent + Worker) that do nothing, or wait a fixed time.

They behave as the mix says (sdlcflow.bench.mix): a step's attempt fails when the draw for its
change says so, the policy step says REVIEW for the drawn share of changes, promote reports
the artifact it shipped. Run as its own process, so its CPU and memory are measured apart:

    python -m sdlcflow.bench.agents --prefix bench-1a2b/ --stats-out agents.json

with SDLCFLOW_AGENT_CREDENTIAL and SDLCFLOW_AGENT_KEY set (the suite issues both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdlcflow.agents import (
    AgentDefinition,
    PolicyOutcome,
    TaskContract,
    TaskFailure,
    TaskResult,
    VerifiedState,
    Worker,
    agent,
    context,
)
from sdlcflow.bench.mix import (
    CHECK_CAPABILITIES,
    MixSpec,
    says_review,
    should_fail,
    template_of_task,
)
from sdlcflow.core.events import PolicyDecision

BENCH_POLICY_REVISION = "sdlcflow-bench-policy-1"


def bench_agents(spec: MixSpec, latency_ms: float) -> list[AgentDefinition]:
    """One agent per capability of the bench templates, following the mix."""
    return [_make_agent(capability, spec, latency_ms) for capability in CHECK_CAPABILITIES]


def _make_agent(capability: str, spec: MixSpec, latency_ms: float) -> AgentDefinition:
    async def handle(task: TaskContract) -> TaskResult:
        ctx = context()
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        template, step = template_of_task(task.id, ctx.change_id, spec)
        if should_fail(spec, ctx.change_id, template, step, ctx.lease.attempt):
            raise TaskFailure(
                f"bench: attempt {ctx.lease.attempt} of {step} fails by the mix", retryable=True
            )
        return _result(capability, spec, ctx.change_id, ctx.lease.input)

    handle.__name__ = f"bench_{capability.replace('-', '_')}"
    definition: AgentDefinition = agent(capability)(handle)  # type: ignore[assignment]
    return definition


def _result(
    capability: str, spec: MixSpec, change_id: str, named: Callable[[str], str]
) -> TaskResult:
    verified = VerifiedState(
        head_sha=named("head"), base_sha=named("base"), lockfile_digest=named("lockfile")
    )
    if capability == "policy":
        decision = PolicyDecision.REVIEW if says_review(spec, change_id) else PolicyDecision.PASS
        revision = BENCH_POLICY_REVISION
        return TaskResult(
            verified=VerifiedState(**{**asdict(verified), "policy_revision": revision}),
            policy=PolicyOutcome(decision, True, revision, f"sha256:bench-evidence-{change_id}"),
        )
    if capability == "promote":
        artifact = f"sha256:bench-artifact-{change_id}"
        return TaskResult(
            verified=VerifiedState(**{**asdict(verified), "artifact_digest": artifact})
        )
    return TaskResult()


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    spec = MixSpec(
        seed=args.seed,
        retry_rate=args.retry_rate,
        dead_rate=args.dead_rate,
        review_rate=args.review_rate,
    ).checked()
    worker = Worker(
        bench_agents(spec, args.latency_ms),
        # the task topics are shared with every coordinator on the broker: serve only ours
        repos=(f"{args.prefix}*",),
        concurrency=args.concurrency,
        group_id=args.group,
        drain_timeout_s=0,
        grant_timeout_s=30.0,
        verdict_timeout_s=30.0,
        consumer_config={"auto.offset.reset": "latest"},
    )
    async with worker:
        await worker.run()
    stats = asdict(worker.stats)
    return {k: v for k, v in stats.items() if not isinstance(v, list)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="benchmark agents (no-op or fixed latency)")
    parser.add_argument("--prefix", required=True, help="serve repositories <prefix>* only")
    parser.add_argument("--group", required=True, help="consumer group of the offers")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="work time per task")
    parser.add_argument("--concurrency", type=int, default=64, help="tasks in flight")
    parser.add_argument("--seed", default=MixSpec().seed)
    parser.add_argument("--retry-rate", type=float, default=MixSpec().retry_rate)
    parser.add_argument("--dead-rate", type=float, default=MixSpec().dead_rate)
    parser.add_argument("--review-rate", type=float, default=MixSpec().review_rate)
    parser.add_argument("--stats-out", type=Path, help="write the worker's counters here")
    args = parser.parse_args(argv)
    stats = asyncio.run(serve(args))
    if args.stats_out is not None:
        args.stats_out.write_text(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
