"""The dependency-update and security-scan agents on the real broker, a real git repository and
the coordinator engine: an upgrade request yields a branch, whose head is then linted, tested
and scanned as a dependency-upgrade change."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from sdlcflow.agents import AgentIdentity, Worker
from sdlcflow.agents._loopback import LoopbackCoordinator
from sdlcflow.agents.bindings import (
    dependency_update_agent,
    lint_agent,
    security_scan_agent,
    suite_agent,
)
from sdlcflow.core.events import ActorKind
from sdlcflow.gitops import branch_head, read_blob
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.identity import CredentialClaims, KeyPair, generate_key_pair, issue_credential
from sdlcflow.streams.producer import ChangeRequestProducer, ChangeSpec, EventPublisher
from sdlcflow.streams.topics import task_topic

pytestmark = pytest.mark.integration

DEPENDENCY_FILES = ("requirements.lock", "requirements.txt")


@pytest.fixture
def issuer() -> KeyPair:
    return generate_key_pair(f"ops-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, SampleRepo]]:
    name = f"acme/deps-{uuid.uuid4().hex[:8]}"
    sample = SampleRepo.create(tmp_path / "git")
    monkeypatch.setenv("SDLCFLOW_GIT_REMOTES", json.dumps({name: str(sample.remote)}))
    monkeypatch.setenv("SDLCFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SDLCFLOW_GIT_ROOT", raising=False)
    yield name, sample


@pytest.fixture
def coordinator(
    kafka_bootstrap: str, issuer: KeyPair, repo: tuple[str, SampleRepo]
) -> Iterator[LoopbackCoordinator]:
    loop = LoopbackCoordinator(
        kafka_bootstrap, {issuer.key_id: issuer.public_key}, repos=(repo[0],)
    )
    loop.start()
    yield loop
    loop.stop()
    assert loop.error is None


def identity(issuer: KeyPair, capabilities: tuple[str, ...]) -> AgentIdentity:
    key = generate_key_pair("agent-deps")
    at = int(time.time() * 1000) - 1_000
    claims = CredentialClaims(
        credential_id=str(uuid.uuid4()), subject="agent-deps", kind=ActorKind.AGENT,
        capabilities=capabilities, repos=("*",), paths=("*",), environments=(),
        issued_at=at, expires_at=at + 3_600_000, issuer_key_id=issuer.key_id,
        actor_key=key.public_key_b64,
    )  # fmt: skip
    return AgentIdentity(issue_credential(claims, issuer), key=key)


def fresh_group(bootstrap: str, capabilities: tuple[str, ...]) -> str:
    """A consumer group positioned at the current end of the task topics (no old offers)."""
    group = f"test-deps-{uuid.uuid4().hex[:8]}"
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


def worker(bootstrap: str, issuer: KeyPair, agents: list[Any], repo: str) -> Worker:
    capabilities = tuple(sorted(a.__sdlcflow_agent__.capability for a in agents))
    return Worker(
        agents, bootstrap=bootstrap, identity=identity(issuer, capabilities),
        group_id=fresh_group(bootstrap, capabilities), concurrency=len(agents), repos=(repo,),
        grant_timeout_s=20.0, verdict_timeout_s=20.0, drain_timeout_s=1.0,
    )  # fmt: skip


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def submit(bootstrap: str, spec: ChangeSpec) -> str:
    with EventPublisher(bootstrap) as publisher:
        return ChangeRequestProducer(publisher).submit(spec).change_id


class TestDependencyUpgradeThroughTheBroker:
    """Upgrade request -> branch with the bump; that head passes lint, tests and the scan."""

    async def test_the_bumped_head_is_linted_tested_and_scanned(
        self,
        kafka_bootstrap: str,
        coordinator: LoopbackCoordinator,
        issuer: KeyPair,
        repo: tuple[str, SampleRepo],
    ) -> None:
        name, sample = repo
        updater = worker(kafka_bootstrap, issuer, [dependency_update_agent], name)
        async with updater:
            submit(kafka_bootstrap, ChangeSpec(
                repo=name, base_sha=sample.main, head_sha=sample.main, kind="dependency-update",
                template="dependency-upgrade-request", paths=DEPENDENCY_FILES,
                labels=("upgrade:pyjwt==2.9.0",),
            ))  # fmt: skip
            await until(lambda: updater.stats.accepted == 1, 90)
        head = branch_head(sample.remote, "deps/pyjwt-2.9.0")
        assert head is not None
        assert b"pyjwt==2.9.0" in (read_blob(sample.remote, head, "requirements.lock") or b"")

        checks = worker(
            kafka_bootstrap, issuer, [lint_agent, suite_agent, security_scan_agent], name
        )
        async with checks:
            submit(kafka_bootstrap, ChangeSpec(
                repo=name, base_sha=sample.main, head_sha=head, kind="dependency-update",
                template="dependency-upgrade", paths=DEPENDENCY_FILES, labels=("minor",),
            ))  # fmt: skip
            await until(lambda: checks.stats.accepted + checks.stats.failed == 3, 180)
        assert (checks.stats.accepted, checks.stats.failed, checks.stats.lost) == (3, 0, 0)
