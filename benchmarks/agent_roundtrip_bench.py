"""No-op agent round trip: offer -> lease request -> grant -> result -> accepted.

Runs one agent process (a Worker serving no-op `lint` and `test` agents) against the
coordinator engine (`LoopbackCoordinator`: the processors' CoordinatorEngine in a plain Kafka
loop) on the local broker. Change requests of the `code-change` template are submitted at a
fixed rate; each yields a lint and a test offer. Prints p50/p99 of the per-task round trip
(request sent -> TaskCompleted seen) and of the grant latency, and accepted tasks/s.

    .venv/bin/python benchmarks/agent_roundtrip_bench.py --tasks 2000 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from sdlcflow.agents import AgentIdentity, TaskContract, TaskResult, Worker, agent
from sdlcflow.agents._loopback import LoopbackCoordinator
from sdlcflow.bench.machine import describe_machine
from sdlcflow.core.events import Actor, ActorKind, ChangeRequested, Envelope, Event
from sdlcflow.identity import (
    CredentialClaims,
    decode_public_key,
    generate_key_pair,
    issue_credential,
)
from sdlcflow.settings import Settings
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import CHANGE_REQUESTS
from sdlcflow.tracing import new_trace_id

RESULTS = Path(__file__).parent / "results" / "agent_roundtrip.json"


@agent("lint")
async def noop_lint(task: TaskContract) -> TaskResult:
    return TaskResult()


@agent("test")
async def noop_test(task: TaskContract) -> TaskResult:
    return TaskResult()


def identity_and_issuer() -> tuple[AgentIdentity, Any]:
    issuer = generate_key_pair("bench-ops")
    key = generate_key_pair("bench-agent")
    now = int(time.time() * 1000) - 1000
    claims = CredentialClaims(
        credential_id=str(uuid.uuid4()), subject="bench-agent", kind=ActorKind.AGENT,
        capabilities=("lint", "test"), repos=("*",), paths=("*",), environments=(),
        issued_at=now, expires_at=now + 3_600_000, issuer_key_id=issuer.key_id,
        actor_key=key.public_key_b64,
    )  # fmt: skip
    return AgentIdentity(issue_credential(claims, issuer), key=key), issuer


def change_request(repo: str) -> Event:
    envelope = Envelope(
        event_id=str(uuid.uuid4()), type="ChangeRequested", occurred_at=int(time.time() * 1000),
        repo=repo, change_id=str(uuid.uuid4()), task_id=None, trace_id=new_trace_id(),
        causation_id=None, actor=Actor(ActorKind.PRODUCER, "bench"),
    )  # fmt: skip
    payload = ChangeRequested(
        kind="code", template="code-change", base_sha="b" * 40, head_sha=uuid.uuid4().hex * 1,
        lockfile_digest="",
    )  # fmt: skip
    return Event(envelope, payload)


async def submit(bootstrap: str, changes: int, rate: float, repos: int) -> float:
    publisher = EventPublisher(bootstrap)
    start = time.monotonic()
    for index in range(changes):
        due = start + index / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        publisher.publish(CHANGE_REQUESTS, change_request(f"bench/repo-{index % repos}"))
    await asyncio.to_thread(publisher.flush)
    return time.monotonic() - start


def serve_coordinator(bootstrap: str, key_id: str, public_key: str, ready: Any, stop: Any) -> None:
    """The coordinator in its own process, so it does not share the agent's interpreter."""
    coordinator = LoopbackCoordinator(bootstrap, {key_id: decode_public_key(public_key)})
    coordinator.start()
    ready.set()
    stop.wait()
    coordinator.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = Settings.from_env().kafka_bootstrap
    identity, issuer = identity_and_issuer()
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    coordinator = context.Process(
        target=serve_coordinator,
        args=(bootstrap, issuer.key_id, issuer.public_key_b64, ready, stop),
    )
    coordinator.start()
    await asyncio.to_thread(ready.wait, 60)
    tasks = args.tasks - args.tasks % 2
    try:
        worker = Worker(
            [noop_lint, noop_test], bootstrap=bootstrap, identity=identity,
            concurrency=args.concurrency, group_id=f"bench-{uuid.uuid4().hex[:8]}",
            consumer_config={"auto.offset.reset": "latest"},
        )  # fmt: skip
        async with worker:
            await asyncio.sleep(args.warmup_s)  # group join and partition assignment
            begin = time.monotonic()
            submit_s = await submit(bootstrap, tasks // 2, args.rate / 2, args.repos)
            deadline = time.monotonic() + args.timeout_s
            while worker.stats.accepted < tasks and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - begin
            stats = worker.stats
    finally:
        stop.set()
        coordinator.join(15)
    rt, grant = stats.round_trip_ms, stats.grant_latency_ms
    return {
        "benchmark": "agent_roundtrip",
        "target": {"p99_ms": 25, "tasks_per_s": args.rate},
        "tasks_requested": tasks, "tasks_accepted": stats.accepted, "offers": stats.offers,
        "concurrency": args.concurrency, "repos": args.repos, "submit_s": round(submit_s, 3),
        "elapsed_s": round(elapsed, 3), "accepted_per_s": round(stats.accepted / elapsed, 1),
        "round_trip_ms": {"p50": round(pct(rt, 0.5), 2), "p99": round(pct(rt, 0.99), 2),
                          "mean": round(statistics.fmean(rt), 2) if rt else None},
        "grant_ms": {"p50": round(pct(grant, 0.5), 2), "p99": round(pct(grant, 0.99), 2)},
        "coordinator": "LoopbackCoordinator (processors CoordinatorEngine) in its own process",
        "machine": describe_machine(),
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks (2 per change request)")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered tasks per second")
    parser.add_argument("--concurrency", type=int, default=64, help="Worker concurrency")
    parser.add_argument("--repos", type=int, default=200, help="distinct repositories")
    parser.add_argument("--warmup-s", type=float, default=6.0, help="wait for group assignment")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="give up after this")
    result = asyncio.run(main(parser.parse_args()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
