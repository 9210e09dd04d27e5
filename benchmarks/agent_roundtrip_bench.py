"""No-op agent round trip: offer -> lease request -> grant -> result -> accepted.

Runs one agent process (a Worker serving no-op `lint` and `test` agents) against a
coordinator in its own process on the local broker: `--coordinator loopback` (default) is the
processors' CoordinatorEngine in a plain Kafka loop (`LoopbackCoordinator`), `--coordinator
processors` is `sdlcflow run processors` itself (faust, rocksdb tables, changelogs). Both serve
only this run's repositories, so other users of the shared broker cost them no decoding.
Change requests of the `code-change` template are submitted at each offered rate in turn; each
yields a lint and a test offer. For each rate it prints p50/p99 of the per-task round trip
(lease request sent -> TaskCompleted seen), of offer -> accepted (the offer's decision time to
the verdict), of the grant latency, accepted tasks/s, and the median and p99 of each hop
(`hops_ms`, from the Worker's `TaskHops`; all clocks are this host's):

    decide_offer      the offer's cause (the change request) -> offer produced (coordinator)
    offer_delivery    offer produced -> seen by the agent's event loop
    queued            offer seen -> lease requested
    decide_grant      lease requested -> grant produced (coordinator)
    grant_delivery    grant produced -> seen by the agent
    wait_to_start     grant seen -> handler started (behind the repository's earlier task)
    handler           handler started -> result sent
    decide_verdict    result sent -> TaskCompleted produced (coordinator)
    verdict_delivery  TaskCompleted produced -> seen by the agent
    enqueue_to_grant  the offer's cause -> grant produced (the suite's enqueue -> lease)

`--compare` also runs, side by side in the same run, a worker with Nagle's algorithm off and
librdkafka's default fetch.wait.max.ms (500 ms) for the offers (ours: 50 ms, see _transport);
`--processors-env 'SDLCFLOW_BATCH_WITHIN_MS=5'` (repeatable; `;` joins several variables) adds
a run with the processors started with that environment; `--processors-tree DIR` adds a run
with the processors imported from another source tree (e.g. `git archive` of an older commit:
an A/B of coordinator changes). `--rounds N` alternates the runs N times so drifting machine
load hits them all alike; `--out` names the results file.

    .venv/bin/python benchmarks/agent_roundtrip_bench.py --rates 50,200,1000 --compare
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from sdlcflow.agents import AgentIdentity, TaskContract, TaskResult, Worker, agent
from sdlcflow.agents._loopback import LoopbackCoordinator
from sdlcflow.agents._worker import TaskHops
from sdlcflow.bench.machine import describe_machine
from sdlcflow.bench.processes import ProcessSet
from sdlcflow.core.events import Actor, ActorKind, ChangeRequested, Envelope, Event
from sdlcflow.identity import (
    CredentialClaims,
    decode_public_key,
    generate_key_pair,
    issue_credential,
)
from sdlcflow.infra.topics import forgotten_at_exit
from sdlcflow.settings import Settings
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import CHANGE_REQUESTS, COORDINATOR
from sdlcflow.tracing import new_trace_id

RESULTS = Path(__file__).parent / "results" / "agent_roundtrip.json"
# the alternative measured side by side (--compare)
ALTERNATIVE_PRODUCER = {"socket.nagle.disable": True}
ALTERNATIVE_CONSUMER = {**ALTERNATIVE_PRODUCER, "fetch.wait.max.ms": 500}


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
        kind="code", template="code-change", base_sha="b" * 40, head_sha=uuid.uuid4().hex,
        lockfile_digest="",
    )  # fmt: skip
    return Event(envelope, payload)


async def submit(bootstrap: str, prefix: str, changes: int, rate: float, repos: int) -> float:
    publisher = EventPublisher(bootstrap)
    start = time.monotonic()
    for index in range(changes):
        due = start + index / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        publisher.publish(CHANGE_REQUESTS, change_request(f"{prefix}repo-{index % repos}"))
    await asyncio.to_thread(publisher.flush)
    return time.monotonic() - start


def serve_coordinator(
    bootstrap: str, prefix: str, key_id: str, public_key: str, ready: Any, stop: Any
) -> None:
    """The coordinator in its own process, so it does not share the agent's interpreter."""
    coordinator = LoopbackCoordinator(
        bootstrap, {key_id: decode_public_key(public_key)}, repos=(f"{prefix}*",)
    )
    coordinator.start()
    ready.set()
    stop.wait()
    coordinator.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


HOPS: dict[str, Callable[[TaskHops], float]] = {
    "decide_offer": lambda h: h.offer_produced - h.cause,
    "offer_delivery": lambda h: h.offer_seen - h.offer_produced,
    "queued": lambda h: h.requested - h.offer_seen,
    "decide_grant": lambda h: h.grant_produced - h.requested,
    "grant_delivery": lambda h: h.grant_seen - h.grant_produced,
    "wait_to_start": lambda h: h.started - h.grant_seen,
    "handler": lambda h: h.result_sent - h.started,
    "decide_verdict": lambda h: h.verdict_produced - h.result_sent,
    "verdict_delivery": lambda h: h.verdict_seen - h.verdict_produced,
    "enqueue_to_grant": lambda h: h.grant_produced - h.cause,
}


def hop_summary(hops: list[TaskHops]) -> dict[str, dict[str, float | None]]:
    """p50/p99 of each hop over the phase's accepted tasks."""
    return {name: summary([of(h) for h in hops]) for name, of in HOPS.items()}


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": round(pct(values, 0.5), 2),
        "p99": round(pct(values, 0.99), 2),
        "mean": round(statistics.fmean(values), 2) if values else None,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_size(bootstrap: str, topic: str) -> int:
    """How many messages `topic` holds (sum of high watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        marks = (
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions
        )
        return sum(high for _low, high in marks)
    finally:
        consumer.close()


class Marks:
    """Where a phase's figures start: the worker's cumulative stats, CPU, log sizes."""

    def __init__(self, worker: Worker, coordinator_pid: int, bootstrap: str) -> None:
        stats = worker.stats
        self.accepted = stats.accepted
        self.round_trip = len(stats.round_trip_ms)
        self.offer = len(stats.offer_to_accepted_ms)
        self.grant = len(stats.grant_latency_ms)
        self.hops = len(stats.hops)
        self.agent_cpu = time.process_time()
        self.coordinator_cpu = cpu_seconds(coordinator_pid)
        self.reads = worker.task_topic_reads()
        self.decisions_log = log_size(bootstrap, COORDINATOR)


async def phase(
    worker: Worker, coordinator_pid: int, prefix: str, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    """Offer `args.tasks` tasks at `rate`/s and wait until all are accepted (or time out)."""
    bootstrap = worker.bootstrap
    stats, marks = worker.stats, Marks(worker, coordinator_pid, bootstrap)
    tasks = args.tasks - args.tasks % 2
    load_before = os.getloadavg()[0]
    begin = time.monotonic()
    submit_s = await submit(bootstrap, prefix, tasks // 2, rate / 2, args.repos)
    deadline = time.monotonic() + args.timeout_s
    while stats.accepted - marks.accepted < tasks and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - begin
    accepted = stats.accepted - marks.accepted
    per_task = 1000 / max(1, accepted)
    read, decoded = worker.task_topic_reads()
    return {
        "offered_per_s": rate, "tasks_requested": tasks, "tasks_accepted": accepted,
        "submit_s": round(submit_s, 3), "elapsed_s": round(elapsed, 3),
        "accepted_per_s": round(accepted / elapsed, 1),
        "round_trip_ms": summary(stats.round_trip_ms.since(marks.round_trip)),
        "offer_to_accepted_ms": summary(stats.offer_to_accepted_ms.since(marks.offer)),
        "grant_ms": summary(stats.grant_latency_ms.since(marks.grant)),
        "hops_ms": hop_summary(stats.hops[marks.hops :]),
        "agent_cpu_ms_per_task": round((time.process_time() - marks.agent_cpu) * per_task, 2),
        "coordinator_cpu_ms_per_task": round(
            (cpu_seconds(coordinator_pid) - marks.coordinator_cpu) * per_task, 2),
        "task_topic_messages_read": read - marks.reads[0],
        "task_topic_messages_decoded": decoded - marks.reads[1],
        "decisions_log_messages_meanwhile": log_size(bootstrap, COORDINATOR) - marks.decisions_log,
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }  # fmt: skip


FIGURES = {
    "round_trip_p50_ms": lambda p: p["round_trip_ms"]["p50"],
    "round_trip_p99_ms": lambda p: p["round_trip_ms"]["p99"],
    "decide_grant_p50_ms": lambda p: p["hops_ms"]["decide_grant"]["p50"],
    "decide_grant_p99_ms": lambda p: p["hops_ms"]["decide_grant"]["p99"],
    "enqueue_to_grant_p99_ms": lambda p: p["hops_ms"]["enqueue_to_grant"]["p99"],
    "accepted_per_s": lambda p: p["accepted_per_s"],
    "coordinator_cpu_ms_per_task": lambda p: p["coordinator_cpu_ms_per_task"],
}


def summarize(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per settings and offered rate: the median over the rounds of each headline figure."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for p in phases:
        groups.setdefault((p["settings"], p["offered_per_s"]), []).append(p)
    return [
        {
            "settings": settings,
            "offered_per_s": rate,
            "rounds": len(group),
            **{name: round(statistics.median(map(of, group)), 2) for name, of in FIGURES.items()},
        }
        for (settings, rate), group in groups.items()
    ]


# producer, consumer (agent librdkafka settings), processors' environment
Overrides = tuple[dict[str, Any], dict[str, Any], dict[str, str]]


@contextmanager
def loopback(
    bootstrap: str, prefix: str, args: argparse.Namespace, _env: dict[str, str]
) -> Iterator[int]:
    """The LoopbackCoordinator in its own process; yields its pid."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    process = context.Process(
        target=serve_coordinator,
        args=(bootstrap, prefix, args.issuer.key_id, args.issuer.public_key_b64, ready, stop),
    )
    process.start()
    try:
        ready.wait(60)
        assert process.pid is not None
        yield process.pid
    finally:
        stop.set()
        process.join(15)


@contextmanager
def processors(
    bootstrap: str, prefix: str, args: argparse.Namespace, env: dict[str, str]
) -> Iterator[int]:
    """`sdlcflow run processors` (one faust worker, a fresh app id and data dir); its pid."""
    with (
        forgotten_at_exit(bootstrap) as footprint,
        tempfile.TemporaryDirectory(prefix="bench-rt-") as tmp,
    ):
        workdir = Path(tmp)
        trust = workdir / "trusted-issuers.json"
        trust.write_text(json.dumps({args.issuer.key_id: args.issuer.public_key_b64}))
        procs = ProcessSet(workdir)
        argv = [
            "-m", "sdlcflow.cli", "run", "processors", "--from-end",
            "--app-id", footprint.app(f"{prefix.rstrip('/')}-coordinator"),
            "--data-dir", str(workdir / "processors"), "--trusted-issuers", str(trust),
            "--repos", f"{prefix}*", "--loglevel", "warning",
        ]  # fmt: skip
        managed = procs.start("processors", argv, {"SDLCFLOW_KAFKA_BOOTSTRAP": bootstrap, **env})
        try:
            yield managed.process.pid
        finally:
            procs.stop("processors")
            procs.close()


COORDINATORS = {"loopback": loopback, "processors": processors}


async def warm_up(worker: Worker, prefix: str, args: argparse.Namespace) -> None:
    """Until one change's two tasks are accepted: group joined, coordinator serving."""
    deadline = time.monotonic() + args.timeout_s
    while time.monotonic() < deadline:
        before = worker.stats.accepted
        await submit(worker.bootstrap, prefix, 1, 1.0, 1)
        until = time.monotonic() + 10.0
        while worker.stats.accepted < before + 2 and time.monotonic() < until:
            await asyncio.sleep(0.05)
        if worker.stats.accepted >= before + 2:
            await asyncio.sleep(args.warmup_s)
            return
    raise RuntimeError(f"the coordinator did not accept a warm-up change in {args.timeout_s} s")


async def run_worker(
    name: str, overrides: Overrides, identity: AgentIdentity, args: argparse.Namespace
) -> list[dict[str, Any]]:
    bootstrap = Settings.from_env().kafka_bootstrap
    prefix = f"bench-rt-{uuid.uuid4().hex[:8]}/"
    phases = []
    serve = COORDINATORS[args.coordinator]
    with (
        forgotten_at_exit(bootstrap) as footprint,
        serve(bootstrap, prefix, args, overrides[2]) as coordinator_pid,
    ):
        worker = Worker(
            [noop_lint, noop_test], bootstrap=bootstrap, identity=identity,
            concurrency=args.concurrency, group_id=footprint.group(f"bench-{uuid.uuid4().hex[:8]}"),
            repos=(f"{prefix}*",), producer_config=overrides[0],
            consumer_config={"auto.offset.reset": "latest", **overrides[1]}, record_hops=True,
        )  # fmt: skip
        async with worker:
            await warm_up(worker, prefix, args)
            for rate in args.rates:
                result = await phase(worker, coordinator_pid, prefix, rate, args)
                print(json.dumps({"settings": name, **result}))
                phases.append({"settings": name, **result})
    return phases


async def main(args: argparse.Namespace) -> dict[str, Any]:
    identity, args.issuer = identity_and_issuer()
    runs: list[tuple[str, Overrides]] = [("sdlcflow settings", ({}, {}, {}))]
    if args.compare:
        alternative = (ALTERNATIVE_PRODUCER, ALTERNATIVE_CONSUMER, {})
        runs.append(("nagle off, 500 ms fetch wait", alternative))
    for variant in args.processors_env:
        env = dict(pair.split("=", 1) for pair in variant.split(";") if pair)
        runs.append((f"processors with {variant}", ({}, {}, env)))
    for tree in args.processors_tree:
        # the tree first on sys.path, and not the working directory (`-m` would put it first)
        env = {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(Path(tree).resolve())}
        runs.append((f"processors from {tree}", ({}, {}, env)))
    phases: list[dict[str, Any]] = []
    for round_ in range(args.rounds):  # alternate settings, so load drift hits both alike
        for name, overrides in runs:
            phases += [
                {"round": round_ + 1, **p}
                for p in await run_worker(name, overrides, identity, args)
            ]
    return {
        "benchmark": "agent_roundtrip",
        "target": {"p99_ms": 25, "tasks_per_s": 1000},
        "concurrency": args.concurrency, "repos": args.repos, "tasks_per_phase": args.tasks,
        "phases": phases,
        "summary": summarize(phases),
        "coordinator": {
            "loopback": "LoopbackCoordinator (processors CoordinatorEngine) in its own process",
            "processors": "sdlcflow run processors (one faust worker, rocksdb)",
        }[args.coordinator] + ", serving only this run's repositories",
        "agent": "one Worker process; follows its tasks on sdlc.tasks.<capability> only",
        "machine": describe_machine(),
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per rate (2 per change)")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[50.0, 200.0, 1000.0],
        help="offered tasks per second, one phase each (comma-separated)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="Worker concurrency")
    parser.add_argument("--repos", type=int, default=200, help="distinct repositories")
    parser.add_argument(
        "--coordinator", choices=sorted(COORDINATORS), default="loopback",
        help="the engine in a plain Kafka loop, or `sdlcflow run processors` (faust)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup-s", type=float, default=2.0, help="settle time after the first accepted change"
    )
    parser.add_argument("--timeout-s", type=float, default=120.0, help="give up after this")
    parser.add_argument(
        "--compare", action="store_true", help="also run with librdkafka's default settings"
    )
    parser.add_argument(
        "--processors-env", action="append", default=[], metavar="NAME=VALUE[;NAME=VALUE]",
        help="also run with the processors started with this environment (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--processors-tree", action="append", default=[], metavar="DIR",
        help="also run with the processors imported from this source tree (repeatable)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="repeat (alternating) this often")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "phases")}))
