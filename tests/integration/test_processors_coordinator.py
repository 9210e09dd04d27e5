"""`sdlcflow run processors` against the real broker, driven by scripted agents.

Each coordinator runs as a subprocess with its own app id, data dir and repository prefix
(`--repos '<prefix>*'`), since other coordinators share the topics. The scripted agents sign
their events with credentials from a test issuer the coordinator trusts and act on what they
read on `sdlc.coordinator`; every wait is on a decision arriving there, with a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.demo.services import Service, Services
from sdlcflow.demo.watch import LogWatch, Match, start_group_at_end
from sdlcflow.infra.topics import forgotten_at_exit
from sdlcflow.processors.engine import INPUT_TOPICS
from sdlcflow.processors.testing import SignedActor, TestIssuer, change_request
from sdlcflow.settings import Settings
from sdlcflow.streams.deadletter import MessageDeadLettered
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import (
    AGENT_EVENTS,
    CHANGE_REQUESTS,
    COORDINATOR,
    DEAD_LETTER,
    task_topic,
)

pytestmark = pytest.mark.integration

WAIT_S = 60.0
LEASE_TTL_MS = 3_000
TICK_MS = 100
STEPS = ("lint", "test", "policy", "merge", "promote")
CAPABILITIES = (*STEPS, "approval")
CLOSED = (ev.ChangePromoted, ev.ChangeBlocked, ev.ChangeFailed)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Coordinator:
    """One `sdlcflow run processors` subprocess serving the repositories `<prefix>*`."""

    bootstrap: str
    prefix: str
    app_id: str
    data_dir: Path
    trust: Path
    services: Services
    issuer: TestIssuer
    options: tuple[str, ...] = ()
    service: Service | None = None

    def start(self) -> None:
        self.service = self.services.start_cli(
            self.app_id,
            [
                "run", "processors", "--app-id", self.app_id, "--data-dir", str(self.data_dir),
                "--store", "rocksdb", "--trusted-issuers", str(self.trust),
                "--tick-interval-ms", str(TICK_MS), "--lease-ttl-ms", str(LEASE_TTL_MS),
                "--repos", f"{self.prefix}*", *self.options,
            ],
            {"SDLCFLOW_KAFKA_BOOTSTRAP": self.bootstrap},
        )  # fmt: skip

    def kill_hard(self) -> None:
        """SIGKILL the worker's process group: no shutdown, no commit, no flush."""
        assert self.service is not None
        os.killpg(self.service.process.pid, signal.SIGKILL)
        self.service.process.wait(timeout=10)
        self.services.started.remove(self.service)
        self.service = None

    def repo(self) -> str:
        return f"{self.prefix}{uuid.uuid4().hex[:8]}"

    def agent(self, name: str = "scripted-agent") -> SignedActor:
        return self.issuer.actor(
            name, capabilities=CAPABILITIES, repos=(f"{self.prefix}*",), issued_at=now_ms() - 1_000
        )


class CoordinatorFactory(Protocol):
    def __call__(self, *options: str, prefix: str | None = None) -> Coordinator: ...


@pytest.fixture(scope="module")
def coordinator_factory(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoordinatorFactory]:
    """Starts coordinators with a unique app id, data dir and repository prefix each; with
    `--from-end` among the options the worker positions its new group itself."""
    tmp_path = tmp_path_factory.mktemp("coordinators")
    issuer = TestIssuer.new()
    trust = issuer.write_trust_file(tmp_path / "trusted-issuers.json")
    with (
        forgotten_at_exit(kafka_bootstrap) as footprint,
        Services(tmp_path / "logs", {}) as services,
    ):

        def start(*options: str, prefix: str | None = None) -> Coordinator:
            tag = uuid.uuid4().hex[:8]
            app_id = footprint.app(f"test-proc-{tag}")
            if "--from-end" not in options:
                start_group_at_end(kafka_bootstrap, app_id, INPUT_TOPICS)
            coordinator = Coordinator(
                kafka_bootstrap, prefix or f"procs-{tag}/", app_id, tmp_path / app_id, trust,
                services, issuer, options,
            )  # fmt: skip
            coordinator.start()
            return coordinator

        yield start


@pytest.fixture(scope="module")
def coordinator(coordinator_factory: CoordinatorFactory) -> Coordinator:
    """One worker shared by the tests that do not kill it (each uses its own repository)."""
    return coordinator_factory()


@dataclass
class ScriptedAgents:
    """Agents of every capability that take each offer and succeed at once."""

    coordinator: Coordinator
    repo: str
    watch: LogWatch
    publisher: EventPublisher
    actor: SignedActor
    answered: set[str] = field(default_factory=set)
    contracts: dict[str, ev.TaskContract] = field(default_factory=dict)

    def send(self, payload: ev.Payload, change_id: str | None, task_id: str | None) -> Event:
        event = self.actor.event(
            payload, repo=self.repo, at=now_ms(), change_id=change_id, task_id=task_id
        )
        self.publisher.publish(AGENT_EVENTS, event)
        self.publisher.flush()
        return event

    def step(self) -> None:
        """Answer every offer and grant not answered yet."""
        for event in self.watch.events():
            if event.event_id in self.answered:
                continue
            envelope, payload = event.envelope, event.payload
            if isinstance(payload, ev.TaskOffered):
                self.contracts[envelope.task_id or ""] = payload.contract
                self.send(ev.LeaseRequested(payload.contract.capability), envelope.change_id,
                          envelope.task_id)  # fmt: skip
            elif isinstance(payload, ev.LeaseGranted) and payload.holder == self.actor.actor.id:
                self.send(self.result(event, payload), envelope.change_id, envelope.task_id)
            self.answered.add(event.event_id)

    def result(self, event: Event, grant: ev.LeaseGranted) -> ev.TaskSucceeded:
        """What a passing check of the change's planned state reports."""
        contract = self.contracts[event.envelope.task_id or ""]
        planned = self.watch.events(of(event.envelope.change_id, ev.ChangePlanned))[0]
        assert isinstance(planned.payload, ev.ChangePlanned)
        state = planned.payload.state
        policy = None
        if contract.capability == "policy":
            evidence = f"evidence-{event.envelope.change_id}"
            policy = ev.PolicyOutcome(ev.PolicyDecision.PASS, True, "bundle-1", evidence)
        artifact = f"artifact-{event.envelope.change_id}" if contract.capability == "test" else ""
        verified = ev.VerifiedState(state.head_sha, state.base_sha, state.lockfile_digest, artifact)
        touched = ev.Outputs(
            paths=contract.outputs.paths, environments=contract.outputs.environments
        )
        return ev.TaskSucceeded(
            grant.lease_id, grant.epoch, grant.inputs, touched, (), verified, policy
        )

    def run_until(self, expecting: str, match: Match, timeout_s: float = WAIT_S) -> Event:
        """Keep answering offers and grants until `match` is seen on sdlc.coordinator."""
        deadline = time.monotonic() + timeout_s

        def target_or_work(event: Event) -> bool:
            return match(event) or self.unanswered(event)

        while True:
            self.step()
            found = self.watch.wait_for(
                expecting,
                target_or_work,
                timeout_s=max(deadline - time.monotonic(), 0.1),
                hint="read the coordinator log under the test's tmp_path/logs",
                health=self.coordinator.services.check,
            )
            if match(found):
                return found

    def unanswered(self, event: Event) -> bool:
        actionable = isinstance(event.payload, ev.TaskOffered | ev.LeaseGranted)
        return actionable and event.event_id not in self.answered


def of(change_id: str | None, *types: type, step: str | None = None) -> Match:
    def match(event: Event) -> bool:
        envelope = event.envelope
        if envelope.change_id != change_id or not isinstance(event.payload, types):
            return False
        return step is None or envelope.task_id == f"{change_id}/{step}"

    return match


def submit(publisher: EventPublisher, repo: str, template: str = "code-change") -> str:
    request = change_request(repo, at=now_ms(), template=template)
    publisher.publish(CHANGE_REQUESTS, request)
    publisher.flush()
    assert request.envelope.change_id is not None
    return request.envelope.change_id


def completions_per_task(watch: LogWatch, change_id: str) -> dict[str, set[str]]:
    """Distinct TaskCompleted event ids per task id (redeliveries share an id)."""
    completed: dict[str, set[str]] = defaultdict(set)
    for event in watch.events(of(change_id, ev.TaskCompleted)):
        completed[event.envelope.task_id or ""].add(event.event_id)
    return dict(completed)


@pytest.fixture(scope="module")
def publisher(kafka_bootstrap: str) -> Iterator[EventPublisher]:
    with EventPublisher(kafka_bootstrap) as publisher:
        yield publisher


def agents_for(
    coordinator: Coordinator, repo: str, watch: LogWatch, publisher: EventPublisher
) -> ScriptedAgents:
    return ScriptedAgents(coordinator, repo, watch, publisher, coordinator.agent())


class TestCoordinatorPipeline:
    """A change's DAG runs to its outcome through the faust worker and the real broker."""

    def test_the_code_change_dag_completes_with_change_promoted(
        self, kafka_bootstrap: str, coordinator: Coordinator, publisher: EventPublisher
    ) -> None:
        repo = coordinator.repo()
        task_topics = tuple(task_topic(step) for step in STEPS)
        with (
            LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch,
            LogWatch(kafka_bootstrap, repo, topics=task_topics) as tasks,
        ):
            agents = agents_for(coordinator, repo, watch, publisher)
            change_id = submit(publisher, repo)
            outcome = agents.run_until("the change's outcome", of(change_id, *CLOSED))
            assert isinstance(outcome.payload, ev.ChangePromoted), outcome.payload
            completed = completions_per_task(watch, change_id)
            assert sorted(completed) == sorted(f"{change_id}/{step}" for step in STEPS)
            assert all(len(ids) == 1 for ids in completed.values()), completed
            skipped = watch.events(of(change_id, ev.TaskSkipped))
            assert [e.envelope.task_id for e in skipped] == [f"{change_id}/approval"]
            # agents can follow their tasks to the end on their task topic alone
            routed = tasks.wait_for(
                "TaskCompleted of promote on its task topic",
                of(change_id, ev.TaskCompleted, step="promote"),
                timeout_s=WAIT_S, hint="routing.TASK_DECISIONS",
            )  # fmt: skip
            assert routed.event_id in completed[f"{change_id}/promote"]


TEAM_LANE = """\
name: team-lane
steps:
  - {id: lint, capability: lint, timeout: 5m}
  - {id: merge, capability: merge, needs: [lint], gate: true}
"""


class TestCoordinatorTemplates:
    """A coordinator started with a team's templates directory plans and runs its pipelines."""

    def test_a_change_on_a_directory_template_runs_its_steps_to_promotion(
        self,
        kafka_bootstrap: str,
        coordinator_factory: CoordinatorFactory,
        publisher: EventPublisher,
        tmp_path: Path,
    ) -> None:
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "team-lane.yaml").write_text(TEAM_LANE, encoding="utf-8")
        coordinator = coordinator_factory("--templates", str(templates))
        repo = coordinator.repo()
        with LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch:
            agents = agents_for(coordinator, repo, watch, publisher)
            change_id = submit(publisher, repo, template="team-lane")
            outcome = agents.run_until("the change's outcome", of(change_id, *CLOSED))
            assert isinstance(outcome.payload, ev.ChangePromoted), outcome.payload
            completed = completions_per_task(watch, change_id)
            assert sorted(completed) == [f"{change_id}/lint", f"{change_id}/merge"]


class TestCoordinatorLeases:
    """Leases expire without heartbeats; the stale holder's late result is refused."""

    def test_an_expired_lease_is_reoffered_with_the_next_epoch_and_the_late_result_rejected(
        self, kafka_bootstrap: str, coordinator: Coordinator, publisher: EventPublisher
    ) -> None:
        repo = coordinator.repo()
        with LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch:
            agents = agents_for(coordinator, repo, watch, publisher)
            change_id = submit(publisher, repo)
            offer = watch.wait_for(
                "the lint offer", of(change_id, ev.TaskOffered, step="lint"),
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            assert isinstance(offer.payload, ev.TaskOffered)
            agents.contracts[offer.envelope.task_id or ""] = offer.payload.contract
            agents.send(ev.LeaseRequested("lint"), change_id, offer.envelope.task_id)
            granted = watch.wait_for(
                "the lint grant", of(change_id, ev.LeaseGranted, step="lint"),
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            grant = granted.payload
            assert isinstance(grant, ev.LeaseGranted)
            expired = watch.wait_for(
                "the lint lease's expiry", of(change_id, ev.LeaseExpired, step="lint"),
                timeout_s=WAIT_S, hint="ticks drive expiry", health=coordinator.services.check,
            )  # fmt: skip
            assert isinstance(expired.payload, ev.LeaseExpired)
            assert expired.payload.lease_id == grant.lease_id
            reoffer = watch.wait_for(
                "the lint re-offer",
                lambda e: of(change_id, ev.TaskOffered, step="lint")(e) and e != offer,
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            assert isinstance(reoffer.payload, ev.TaskOffered)
            assert reoffer.payload.epoch == grant.epoch + 1
            late = agents.send(agents.result(granted, grant), change_id, offer.envelope.task_id)
            rejected = watch.wait_for(
                "the late result's rejection",
                lambda e: isinstance(e.payload, ev.ResultRejected)
                and e.envelope.causation_id == late.event_id,
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            assert isinstance(rejected.payload, ev.ResultRejected)
            assert rejected.payload.epoch == grant.epoch
            assert not watch.events(of(change_id, ev.TaskCompleted, step="lint"))


class TestCoordinatorCrash:
    """A worker killed mid-DAG resumes from its tables and committed offsets."""

    def test_a_killed_worker_restarts_and_finishes_the_dag_completing_each_task_once(
        self,
        kafka_bootstrap: str,
        coordinator_factory: CoordinatorFactory,
        publisher: EventPublisher,
    ) -> None:
        coordinator = coordinator_factory()  # its own: this test kills it
        repo = coordinator.repo()
        with LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch:
            agents = agents_for(coordinator, repo, watch, publisher)
            change_id = submit(publisher, repo)
            agents.run_until("policy's completion", of(change_id, ev.TaskCompleted, step="policy"))
            coordinator.kill_hard()
            agents.step()  # the merge lease request goes out while no worker runs
            coordinator.start()
            outcome = agents.run_until("the change's outcome", of(change_id, *CLOSED), 120.0)
            assert isinstance(outcome.payload, ev.ChangePromoted), outcome.payload
            completed = completions_per_task(watch, change_id)
            assert sorted(completed) == sorted(f"{change_id}/{step}" for step in STEPS)
            assert all(len(ids) == 1 for ids in completed.values()), completed


class TestCoordinatorRefusals:
    """Bad input is recorded and dead-lettered; the worker goes on."""

    def test_poison_bytes_are_dead_lettered_with_a_reason_and_the_worker_continues(
        self, kafka_bootstrap: str, coordinator: Coordinator, publisher: EventPublisher
    ) -> None:
        repo = coordinator.repo()
        poison = b"\x00\x00\x00\x00\x07not avro at all"
        with (
            LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch,
            LogWatch(kafka_bootstrap, repo, topics=(DEAD_LETTER,)) as letters,
        ):
            publisher.publish_raw(AGENT_EVENTS, repo.encode(), poison, [], label="poison")
            publisher.flush()
            letter = letters.wait_for(
                "the poison's dead letter", lambda e: True,
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            assert isinstance(letter.payload, MessageDeadLettered)
            assert letter.payload.value == poison
            assert letter.payload.topic == AGENT_EVENTS
            assert letter.payload.reason and letter.payload.detail
            change_id = submit(publisher, repo)
            watch.wait_for(
                "the next change's plan", of(change_id, ev.ChangePlanned),
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip

    def test_a_forged_credential_is_rejected_and_dead_lettered(
        self, kafka_bootstrap: str, coordinator: Coordinator, publisher: EventPublisher
    ) -> None:
        repo = coordinator.repo()
        forger = TestIssuer.new().actor(
            "forger", capabilities=CAPABILITIES, repos=("*",), issued_at=now_ms() - 1_000
        )
        with (
            LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch,
            LogWatch(kafka_bootstrap, repo, topics=(DEAD_LETTER,)) as letters,
        ):
            change_id = submit(publisher, repo)
            offer = watch.wait_for(
                "the lint offer", of(change_id, ev.TaskOffered, step="lint"),
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            forged = forger.event(
                ev.LeaseRequested("lint"), repo=repo, at=now_ms(), change_id=change_id,
                task_id=offer.envelope.task_id,
            )  # fmt: skip
            publisher.publish(AGENT_EVENTS, forged)
            publisher.flush()
            rejected = watch.wait_for(
                "the forged request's rejection",
                lambda e: isinstance(e.payload, ev.EventRejected)
                and e.payload.rejected_event_id == forged.event_id,
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            assert isinstance(rejected.payload, ev.EventRejected)
            letter = letters.wait_for(
                "the forged request's dead letter", lambda e: True,
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            assert isinstance(letter.payload, MessageDeadLettered)
            assert letter.payload.reason
            assert not watch.events(of(change_id, ev.LeaseGranted))


class TestCoordinatorReplay:
    """The table is a fold of the decisions log."""

    def test_replay_verify_finds_no_difference_after_a_run(
        self, kafka_bootstrap: str, coordinator: Coordinator, publisher: EventPublisher
    ) -> None:
        repo = coordinator.repo()
        with LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch:
            agents = agents_for(coordinator, repo, watch, publisher)
            done = submit(publisher, repo)
            agents.run_until("the first change's outcome", of(done, *CLOSED))
            open_change = submit(publisher, repo)
            agents.run_until("the second change's test", of(open_change, ev.TaskCompleted))
        replay = subprocess.run(
            [sys.executable, "-m", "sdlcflow.cli", "replay", "--verify", "--app-id",
             coordinator.app_id, "--repos", f"{coordinator.prefix}*"],
            env={**os.environ, "SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "no difference" in replay.stdout


def group_members(bootstrap: str, group_id: str) -> list[set[tuple[str, int]]]:
    """The input partitions assigned to each member of a consumer group, as the broker says."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group_id])[group_id].result(timeout=10)
    return [
        {(tp.topic, tp.partition) for tp in member.assignment.topic_partitions
         if tp.topic in INPUT_TOPICS}
        for member in described.members
    ]  # fmt: skip


def wait_until(what: str, condition: Callable[[], bool], coordinator: Coordinator) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        coordinator.services.check()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}")
        time.sleep(0.2)  # polling the broker's view, not standing in for work


class TestCoordinatorWorkers:
    """`run processors --workers 2`: two workers in one group share the input partitions."""

    def test_two_workers_split_the_partitions_and_a_change_completes_each_task_once(
        self,
        kafka_bootstrap: str,
        coordinator_factory: CoordinatorFactory,
        publisher: EventPublisher,
    ) -> None:
        coordinator = coordinator_factory("--workers", "2")

        def split() -> bool:
            members = group_members(kafka_bootstrap, coordinator.app_id)
            return len(members) == 2 and all(members) and not members[0] & members[1]

        wait_until("two members with disjoint input partitions", split, coordinator)
        members = group_members(kafka_bootstrap, coordinator.app_id)
        assert len(members[0] | members[1]) == len(INPUT_TOPICS) * Settings.from_env().partitions
        repo = coordinator.repo()
        with LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch:
            agents = agents_for(coordinator, repo, watch, publisher)
            change_id = submit(publisher, repo)
            outcome = agents.run_until("the change's outcome", of(change_id, *CLOSED))
            assert isinstance(outcome.payload, ev.ChangePromoted), outcome.payload
            completed = completions_per_task(watch, change_id)
            assert sorted(completed) == sorted(f"{change_id}/{step}" for step in STEPS)
            assert all(len(ids) == 1 for ids in completed.values()), completed


class TestCoordinatorFromEnd:
    """`--from-end`: a new app id ignores inputs sent before it started."""

    def test_a_new_group_started_from_the_end_plans_only_changes_sent_after_it(
        self,
        kafka_bootstrap: str,
        coordinator_factory: CoordinatorFactory,
        publisher: EventPublisher,
    ) -> None:
        prefix = f"procs-{uuid.uuid4().hex[:8]}/"
        repo = f"{prefix}history"
        with LogWatch(kafka_bootstrap, repo, topics=(COORDINATOR,)) as watch:
            before = submit(publisher, repo)  # history, sent before the coordinator exists
            coordinator = coordinator_factory("--from-end", prefix=prefix)
            wait_until(
                "the new group's offsets at the inputs' end",
                lambda: committed(kafka_bootstrap, coordinator.app_id),
                coordinator,
            )
            after = submit(publisher, repo)
            watch.wait_for(
                "the later change's plan", of(after, ev.ChangePlanned),
                timeout_s=WAIT_S, hint="", health=coordinator.services.check,
            )  # fmt: skip
            # one repository, one partition, in order: the earlier request would come first
            assert not [e for e in watch.events() if e.envelope.change_id == before]


def committed(bootstrap: str, group_id: str) -> bool:
    """Has the group committed offsets on every partition of the change-requests topic?"""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        partitions = consumer.list_topics(CHANGE_REQUESTS, timeout=10).topics[CHANGE_REQUESTS]
        asked = [TopicPartition(CHANGE_REQUESTS, p) for p in partitions.partitions]
        return all(tp.offset >= 0 for tp in consumer.committed(asked, timeout=10))
    finally:
        consumer.close()
