"""The agent SDK against the real broker and the coordinator engine.

The coordinator is `LoopbackCoordinator`: the processors' CoordinatorEngine (credential and
signature gate, pure core, routing) driven by a plain Kafka loop, because `sdlcflow run
processors` was not available when these tests were written. Agents talk only to topics, so
the SDK sees exactly what the faust shell would publish.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from sdlcflow.agents import (
    AgentIdentity,
    LeaseLoss,
    TaskContract,
    TaskResult,
    Worker,
    agent,
    context,
    ensure_live,
)
from sdlcflow.agents._loopback import LoopbackCoordinator
from sdlcflow.core.events import ActorKind
from sdlcflow.identity import (
    CredentialClaims,
    KeyPair,
    generate_key_pair,
    issue_credential,
    save_private_key,
)
from sdlcflow.streams.producer import ChangeRequestProducer, ChangeSpec, EventPublisher
from sdlcflow.streams.topics import task_topic

pytestmark = pytest.mark.integration

LEASE_TTL_MS = 1_500
# every repository of this module's tests is acme/<RUN>-...: the coordinator and the agents
# serve only those, so other users of the shared broker cannot interfere
RUN = uuid.uuid4().hex[:8]
SERVED = (f"acme/{RUN}-*",)


def now_ms() -> int:
    return int(time.time() * 1000)


class Ops:
    """Issues agent credentials from one trusted issuer key."""

    def __init__(self) -> None:
        self.issuer = generate_key_pair(f"ops-{uuid.uuid4().hex[:6]}")

    def identity(
        self, name: str, capabilities: tuple[str, ...], *, issuer: KeyPair | None = None
    ) -> AgentIdentity:
        key = generate_key_pair(name)
        return AgentIdentity(self.token(name, key, capabilities, issuer=issuer), key=key)

    def token(
        self,
        name: str,
        key: KeyPair,
        capabilities: tuple[str, ...],
        *,
        issuer: KeyPair | None = None,
        issued_at: int | None = None,
        lifetime_ms: int = 3_600_000,
    ) -> str:
        signer = issuer or self.issuer
        at = issued_at if issued_at is not None else now_ms() - 1_000
        claims = CredentialClaims(
            credential_id=str(uuid.uuid4()), subject=name, kind=ActorKind.AGENT,
            capabilities=capabilities, repos=("*",), paths=("*",), environments=("staging",),
            issued_at=at, expires_at=at + lifetime_ms, issuer_key_id=self.issuer.key_id,
            actor_key=key.public_key_b64,
        )  # fmt: skip
        return issue_credential(claims, signer)


@pytest.fixture
def ops() -> Ops:
    return Ops()


@pytest.fixture
def coordinator(kafka_bootstrap: str, ops: Ops) -> Iterator[LoopbackCoordinator]:
    loop = LoopbackCoordinator(
        kafka_bootstrap, {ops.issuer.key_id: ops.issuer.public_key}, lease_ttl_ms=LEASE_TTL_MS,
        tick_interval_ms=100, repos=SERVED,
    )  # fmt: skip
    loop.start()
    yield loop
    loop.stop()
    assert loop.error is None


def fresh_group(bootstrap: str, capabilities: tuple[str, ...]) -> str:
    """A consumer group positioned at the current end of the task topics (no old offers)."""
    group = f"test-agents-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    offsets = []
    for capability in capabilities:
        topic = task_topic(capability)
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            offsets.append(TopicPartition(topic, partition, high))
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()
    return group


def submit(bootstrap: str, repo: str, head: str, *, change_id: str | None = None) -> str:
    with EventPublisher(bootstrap) as publisher:
        spec = ChangeSpec(
            repo=repo, base_sha="b" * 40, head_sha=head, kind="code", template="code-change"
        )
        return ChangeRequestProducer(publisher).submit(spec, change_id=change_id).change_id


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def worker_for(bootstrap: str, agents: list[Any], identity: AgentIdentity, **kwargs: Any) -> Worker:
    kwargs.setdefault("repos", SERVED)
    capabilities = tuple(sorted({a.__sdlcflow_agent__.capability for a in agents}))
    return Worker(
        agents, bootstrap=bootstrap, identity=identity,
        group_id=fresh_group(bootstrap, capabilities), grant_timeout_s=5.0,
        verdict_timeout_s=5.0, drain_timeout_s=1.0, stop_grace_s=2.0, **kwargs,
    )  # fmt: skip


EPOCHS: list[int] = []


@agent("lint")
def quick_lint(task: TaskContract) -> TaskResult:
    EPOCHS.append(context().lease.epoch)
    return TaskResult()


@agent("test")
async def quick_test(task: TaskContract) -> TaskResult:
    return TaskResult()


class TestRoundTrip:
    """Offer -> lease -> handler -> result accepted, through the broker and the coordinator."""

    async def test_lint_and_test_results_are_accepted(
        self, kafka_bootstrap: str, coordinator: LoopbackCoordinator, ops: Ops
    ) -> None:
        identity = ops.identity("agent-rt", ("lint", "test"))
        worker = worker_for(kafka_bootstrap, [quick_lint, quick_test], identity, concurrency=2)
        async with worker:
            submit(kafka_bootstrap, f"acme/{RUN}-rt-{uuid.uuid4().hex[:6]}", "1" * 40)
            await until(lambda: worker.stats.accepted == 2)
        assert (worker.stats.granted, worker.stats.succeeded, worker.stats.lost) == (2, 2, 0)


class TestPipelinedOffers:
    """A repository's later offer is leased while its earlier task runs, kept alive, then run."""

    async def test_a_queued_lease_outlives_its_ttl_and_runs_after_the_earlier_task(
        self, kafka_bootstrap: str, coordinator: LoopbackCoordinator, ops: Ops
    ) -> None:
        steps: list[tuple[str, str]] = []
        worker: Worker | None = None

        async def hold_first(task: TaskContract) -> TaskResult:
            steps.append(("start", task.capability))
            if len(steps) == 1:  # the other offer (same repository) waits behind this one
                assert worker is not None
                # both leases granted, and heartbeats spanning more than a TTL (2 per TTL/3)
                await until(lambda: worker.stats.granted == 2 and worker.stats.heartbeats >= 8)
            steps.append(("end", task.capability))
            return TaskResult()

        @agent("lint")
        async def lint(task: TaskContract) -> TaskResult:
            return await hold_first(task)

        @agent("test")
        async def test(task: TaskContract) -> TaskResult:
            return await hold_first(task)

        agents = [lint, test]
        identity = ops.identity("agent-pipelined", ("lint", "test"))
        worker = worker_for(kafka_bootstrap, agents, identity, concurrency=2)
        async with worker:
            submit(kafka_bootstrap, f"acme/{RUN}-pipe-{uuid.uuid4().hex[:6]}", "7" * 40)
            await until(lambda: worker.stats.accepted + worker.stats.lost >= 2)
        first, second = steps[0][1], steps[2][1]
        assert steps == [("start", first), ("end", first), ("start", second), ("end", second)]
        assert (worker.stats.accepted, worker.stats.lost, worker.stats.heartbeats >= 8) == (
            2,
            0,
            True,
        )


class TestShutdownPastTheDrainTime:
    """Shutdown stops and compensates a running task and releases a queued lease unrun."""

    async def test_running_task_is_compensated_and_queued_lease_released_unrun(
        self, kafka_bootstrap: str, coordinator: LoopbackCoordinator, ops: Ops
    ) -> None:
        started: list[str] = []
        compensated: list[str] = []

        async def run_until_stopped(task: TaskContract) -> TaskResult:
            started.append(task.capability)
            await asyncio.Event().wait()  # never finishes on its own: the SDK stops it
            return TaskResult()

        def undo(task: TaskContract, _loss: LeaseLoss) -> None:
            compensated.append(task.capability)

        @agent("lint", compensate=undo)
        async def lint(task: TaskContract) -> TaskResult:
            return await run_until_stopped(task)

        @agent("test", compensate=undo)
        async def test(task: TaskContract) -> TaskResult:
            return await run_until_stopped(task)

        identity = ops.identity("agent-shutdown", ("lint", "test"))
        worker = worker_for(kafka_bootstrap, [lint, test], identity, concurrency=2)
        await worker.start()
        try:
            submit(kafka_bootstrap, f"acme/{RUN}-stop-{uuid.uuid4().hex[:6]}", "8" * 40)
            await until(lambda: worker.stats.granted == 2 and len(started) == 1)
        finally:
            await worker.shutdown()
        assert compensated == started
        assert (worker.stats.lost, worker.stats.succeeded, worker.stats.accepted) == (2, 0, 0)


class TestKilledAgent:
    """A SIGKILLed agent's lease expires and another agent finishes the task with epoch + 1."""

    async def test_task_is_released_by_expiry_and_finished_by_another(
        self, kafka_bootstrap: str, coordinator: LoopbackCoordinator, ops: Ops, tmp_path: Path
    ) -> None:
        marker = tmp_path / "started"
        key = generate_key_pair("agent-doomed")
        save_private_key(key, tmp_path / "doomed.pem")
        script = tmp_path / "doomed.py"
        script.write_text(
            textwrap.dedent(f"""
            import asyncio, pathlib
            from sdlcflow.agents import TaskContract, TaskResult, Worker, agent

            @agent("lint")
            async def hang(task: TaskContract) -> TaskResult:
                pathlib.Path({str(marker)!r}).write_text(task.id)
                await asyncio.sleep(3600)
                return TaskResult()

            async def main() -> None:
                async with Worker([hang], group_id={fresh_group(kafka_bootstrap, ("lint",))!r},
                                  repos={SERVED!r},
                                  bootstrap={kafka_bootstrap!r}) as worker:
                    await worker.run()

            asyncio.run(main())
        """)
        )
        env = {
            **os.environ,
            "SDLCFLOW_AGENT_CREDENTIAL": ops.token("agent-doomed", key, ("lint",)),
            "SDLCFLOW_AGENT_KEY": str(tmp_path / "doomed.pem"),
        }
        doomed = subprocess.Popen([sys.executable, str(script)], env=env)
        try:
            # its group was committed at the topic's end: it reads the offer whenever it joins
            submit(kafka_bootstrap, f"acme/{RUN}-kill-{uuid.uuid4().hex[:6]}", "2" * 40)
            await until(lambda: _alive(doomed) and marker.exists(), 60)
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
        EPOCHS.clear()
        rescuer = worker_for(kafka_bootstrap, [quick_lint], ops.identity("agent-rescue", ("lint",)))
        async with rescuer:
            await until(lambda: rescuer.stats.accepted == 1, 30)
        assert EPOCHS == [2]


def _alive(process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the agent subprocess died before taking the task"
    return True


LOSSES: list[LeaseLoss] = []
WRITES: list[tuple[str, int]] = []
NEW_HEAD = "4" * 40


def record_loss(task: TaskContract, loss: LeaseLoss) -> None:
    LOSSES.append(loss)


@agent("lint", compensate=record_loss)
async def slow_lint(task: TaskContract) -> TaskResult:
    ctx = context()
    if ctx.lease.input("head") == NEW_HEAD:
        return TaskResult()
    WRITES.append(("started", ctx.lease.epoch))
    while True:  # works until the lease is lost; every write is guarded
        await asyncio.sleep(0.05)
        ensure_live()
        WRITES.append(("wrote", ctx.lease.epoch))


class TestRevocation:
    """A lease revoked mid-run cancels the handler, runs compensation, publishes no result."""

    async def test_head_moved_revokes_compensates_and_the_new_head_is_checked(
        self, kafka_bootstrap: str, coordinator: LoopbackCoordinator, ops: Ops
    ) -> None:
        LOSSES.clear()
        WRITES.clear()
        worker = worker_for(kafka_bootstrap, [slow_lint], ops.identity("agent-rv", ("lint",)))
        repo = f"acme/{RUN}-revoke-{uuid.uuid4().hex[:6]}"
        async with worker:
            change_id = submit(kafka_bootstrap, repo, "3" * 40)
            await until(lambda: len(WRITES) >= 3)
            submit(kafka_bootstrap, repo, NEW_HEAD, change_id=change_id)  # the head moved
            await until(lambda: worker.stats.accepted == 1)
            writes_at_loss = len(WRITES)
            await asyncio.sleep(0.3)  # a handler still running would keep appending
        assert len(WRITES) == writes_at_loss
        assert [(loss.epoch, loss.reason) for loss in LOSSES] == [(1, "lease revoked: HEAD_MOVED")]
        assert (worker.stats.lost, worker.stats.succeeded) == (1, 1)


class TestForgedCredential:
    """A credential not signed by a trusted issuer gets the request refused, never a lease."""

    async def test_forged_credential_is_refused_and_recorded(
        self, kafka_bootstrap: str, coordinator: LoopbackCoordinator, ops: Ops
    ) -> None:
        forger = generate_key_pair(ops.issuer.key_id)  # same key id, different key
        identity = ops.identity("agent-forged", ("lint",), issuer=forger)
        worker = worker_for(kafka_bootstrap, [quick_lint], identity)
        async with worker:
            submit(kafka_bootstrap, f"acme/{RUN}-forged-{uuid.uuid4().hex[:6]}", "5" * 40)
            await until(lambda: worker.stats.refused == 1)
        assert (worker.stats.granted, worker.stats.succeeded) == (0, 0)


SCOPED_REPOS: list[str] = []


@agent("lint")
def scoped_lint(task: TaskContract) -> TaskResult:
    SCOPED_REPOS.append(context().repo)
    return TaskResult()


@agent("test")
def scoped_test(task: TaskContract) -> TaskResult:
    SCOPED_REPOS.append(context().repo)
    return TaskResult()


class TestRepositoryScope:
    """A Worker scoped to repository globs takes only those repositories' offers."""

    async def test_offers_of_other_repositories_are_left_alone(
        self, kafka_bootstrap: str, coordinator: LoopbackCoordinator, ops: Ops
    ) -> None:
        SCOPED_REPOS.clear()
        prefix = f"acme/{RUN}-scope-{uuid.uuid4().hex[:6]}"
        worker = worker_for(
            kafka_bootstrap, [scoped_lint, scoped_test],
            ops.identity("agent-sc", ("lint", "test")), concurrency=2,
            repos=(f"{prefix}-mine*",),
        )  # fmt: skip
        async with worker:
            submit(kafka_bootstrap, f"{prefix}-theirs", "6" * 40)
            submit(kafka_bootstrap, f"{prefix}-mine", "7" * 40)
            await until(lambda: worker.stats.accepted == 2, 120)
            read, decoded = worker.task_topic_reads()
        assert set(SCOPED_REPOS) == {f"{prefix}-mine"}
        assert decoded < read  # offers and the other repository's decisions were not decoded
