"""A real change goes through the real coordinator and the reference agents to its outcome.

`sdlcflow run processors` runs as a subprocess trusting a test issuer; the reference agents
(`sdlcflow.agents.bindings.REFERENCE_AGENTS`) run in-process under one Worker with a credential
from that issuer. The change is a commit on a real bare git repository; the code-change
template takes it through lint, test, policy, merge and promotion to staging.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdlcflow.agents import AgentIdentity, Worker
from sdlcflow.agents.bindings import REFERENCE_AGENTS
from sdlcflow.agents.reference import DependencyUpdateInput, Workspace, update_dependency
from sdlcflow.approvals.evidence import EvidenceStore
from sdlcflow.artifacts import ArtifactStore, Releases
from sdlcflow.core import events as ev
from sdlcflow.core.events import REVIEW_CAPABILITY, ActorKind, Event
from sdlcflow.demo.services import Services
from sdlcflow.demo.watch import LogWatch, Match, start_group_at_end
from sdlcflow.gitops import branch_head
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.infra.topics import BrokerFootprint
from sdlcflow.processors.engine import INPUT_TOPICS
from sdlcflow.processors.testing import TestIssuer
from sdlcflow.streams.producer import ChangeRequestProducer, ChangeSpec, EventPublisher
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR, task_topic

pytestmark = pytest.mark.integration

PIPELINE_TIMEOUT_S = 240.0
CLOSED = (ev.ChangePromoted, ev.ChangeBlocked, ev.ChangeFailed)


@dataclass(frozen=True)
class Pipeline:
    repo: str
    sample: SampleRepo
    data_dir: Path
    issuer: TestIssuer
    services: Services
    footprint: BrokerFootprint


@pytest.fixture
def pipeline(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    footprint: BrokerFootprint,
) -> Iterator[Pipeline]:
    """A sample repository, the bindings configured for it, and a coordinator subprocess."""
    repo = f"acme/login-{uuid.uuid4().hex[:8]}"
    sample = SampleRepo.create(tmp_path / "git")
    data_dir = tmp_path / "data"
    env = {
        "SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SDLCFLOW_DATA_DIR": str(data_dir),
        "SDLCFLOW_GIT_REMOTES": json.dumps({repo: str(sample.remote)}),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the in-process agents read these per task
    issuer = TestIssuer.new()
    trust = issuer.write_trust_file(tmp_path / "trusted-issuers.json")
    app_id = footprint.app(f"test-pipeline-{uuid.uuid4().hex[:8]}")
    start_group_at_end(kafka_bootstrap, app_id, INPUT_TOPICS)
    with Services(tmp_path / "logs", env) as services:
        services.start_cli(
            "coordinator",
            [
                "run",
                "processors",
                "--store",
                "memory",
                "--app-id",
                app_id,
                "--data-dir",
                str(tmp_path / "processors"),
                "--trusted-issuers",
                str(trust),
                "--tick-interval-ms",
                "250",
                "--loglevel",
                "info",
            ],
            {"SDLCFLOW_PROCESSORS_REPOS": repo},
        )
        yield Pipeline(repo, sample, data_dir, issuer, services, footprint)


def reference_worker(bootstrap: str, pipeline: Pipeline) -> Worker:
    """Every reference agent under one identity, reading only offers made from now on."""
    capabilities = tuple(sorted(REFERENCE_AGENTS))
    signed = pipeline.issuer.actor(
        "reference-agents",
        capabilities=capabilities,
        repos=(pipeline.repo,),
        environments=("staging", "prod"),
        issued_at=now_ms() - 1_000,
    )
    group = pipeline.footprint.group(f"test-pipeline-agents-{uuid.uuid4().hex[:8]}")
    start_group_at_end(bootstrap, group, [task_topic(c) for c in capabilities])
    return Worker(
        list(REFERENCE_AGENTS.values()),
        bootstrap=bootstrap,
        identity=AgentIdentity(signed.credential, key=signed.key),
        group_id=group,
        concurrency=2,
    )


def submit(bootstrap: str, spec: ChangeSpec) -> str:
    with EventPublisher(bootstrap) as publisher:
        return ChangeRequestProducer(publisher).submit(spec).change_id


def now_ms() -> int:
    return int(time.time() * 1000)


def sign_approval(bootstrap: str, pipeline: Pipeline, requested: Event) -> None:
    """A human reviewer signs the exact state and evidence the coordinator asked about."""
    assert isinstance(requested.payload, ev.ApprovalRequested)
    reviewer = pipeline.issuer.actor(
        "reviewer-1",
        kind=ActorKind.HUMAN,
        capabilities=(REVIEW_CAPABILITY,),
        repos=(pipeline.repo,),
        issued_at=now_ms() - 1_000,
    )
    signed = reviewer.event(
        ev.ApprovalSigned(requested.payload.state, requested.payload.evidence_digest, "ok"),
        repo=pipeline.repo,
        at=now_ms(),
        change_id=requested.envelope.change_id,
        task_id=requested.envelope.task_id,
    )
    with EventPublisher(bootstrap) as publisher:
        publisher.publish(AGENT_EVENTS, signed)


def of_change(change_id: str, *types: type) -> Match:
    def match(event: Event) -> bool:
        return event.envelope.change_id == change_id and isinstance(event.payload, types)

    return match


class TestReferencePipeline:
    """lint, test, policy, merge, promotion to staging, coordinated by `sdlcflow run processors`."""

    async def test_a_clean_change_is_merged_and_promoted_to_staging(
        self, kafka_bootstrap: str, pipeline: Pipeline
    ) -> None:
        sample = pipeline.sample
        head = sample.commit(sample.main, "feature", {"service/extra.py": b'"""Extra."""\n'})
        spec = ChangeSpec(
            repo=pipeline.repo, base_sha=sample.main, head_sha=head, kind="code",
            template="code-change", title="add extra", paths=("service/extra.py",),
            environments=("staging",),
        )  # fmt: skip
        with LogWatch(kafka_bootstrap, pipeline.repo, topics=(COORDINATOR,)) as watch:
            async with reference_worker(kafka_bootstrap, pipeline):
                change_id = submit(kafka_bootstrap, spec)
                outcome = await asyncio.to_thread(
                    watch.wait_for,
                    "the change's terminal outcome",
                    of_change(change_id, *CLOSED),
                    timeout_s=PIPELINE_TIMEOUT_S,
                    hint="read the coordinator log under the test's tmp_path/logs",
                    health=pipeline.services.check,
                )
            decisions = watch.events(of_change(change_id, ev.TaskCompleted, ev.TaskSkipped))
        assert isinstance(outcome.payload, ev.ChangePromoted), outcome.payload
        assert outcome.payload.state.head_sha == head
        done = {e.envelope.task_id.rpartition("/")[2]: type(e.payload) for e in decisions}  # type: ignore[union-attr]
        assert done == {
            "lint": ev.TaskCompleted, "test": ev.TaskCompleted, "policy": ev.TaskCompleted,
            "approval": ev.TaskSkipped, "merge": ev.TaskCompleted, "promote": ev.TaskCompleted,
        }  # fmt: skip
        assert branch_head(sample.remote, "main") == head
        staging = Releases(ArtifactStore(pipeline.data_dir / "artifacts")).current("staging")
        assert staging is not None and staging.source_sha == head
        assert outcome.payload.state.artifact_digest == staging.artifact

    async def test_an_auth_library_bump_waits_for_a_signed_approval_on_stored_evidence(
        self, kafka_bootstrap: str, pipeline: Pipeline, tmp_path: Path
    ) -> None:
        sample = pipeline.sample
        bump = DependencyUpdateInput(sample.remote, sample.main, "deps/pyjwt", "pyjwt", "2.9.0")
        bumped = update_dependency(bump, Workspace.at(tmp_path / "bump"))
        spec = ChangeSpec(
            repo=pipeline.repo, base_sha=sample.main, head_sha=bumped.head, kind="dependency",
            template="code-change", title="pyjwt 2.9.0", paths=bumped.paths,
            environments=("staging",),
        )  # fmt: skip
        with LogWatch(kafka_bootstrap, pipeline.repo, topics=(COORDINATOR,)) as watch:
            async with reference_worker(kafka_bootstrap, pipeline):
                change_id = submit(kafka_bootstrap, spec)
                requested = await asyncio.to_thread(
                    watch.wait_for,
                    "ApprovalRequested after a REVIEW policy decision",
                    of_change(change_id, ev.ApprovalRequested),
                    timeout_s=PIPELINE_TIMEOUT_S,
                    hint="read the coordinator log under the test's tmp_path/logs",
                    health=pipeline.services.check,
                )
                offered = watch.events(of_change(change_id, ev.TaskOffered))
                assert f"{change_id}/merge" not in {e.envelope.task_id for e in offered}
                assert isinstance(requested.payload, ev.ApprovalRequested)
                evidence = EvidenceStore.at(pipeline.data_dir / "artifacts").get(
                    requested.payload.evidence_digest
                )
                assert evidence.state.head_sha == bumped.head and "pyjwt" in evidence.diff
                sign_approval(kafka_bootstrap, pipeline, requested)
                outcome = await asyncio.to_thread(
                    watch.wait_for,
                    "the change's terminal outcome after the approval",
                    of_change(change_id, *CLOSED),
                    timeout_s=PIPELINE_TIMEOUT_S,
                    hint="an EventRejected on sdlc.coordinator says why an approval was refused",
                    health=pipeline.services.check,
                )
        assert isinstance(outcome.payload, ev.ChangePromoted), outcome.payload
        assert branch_head(sample.remote, "main") == bumped.head
