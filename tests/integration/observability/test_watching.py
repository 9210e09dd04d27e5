"""Watching a real run: /metrics of `run processors` and `audit sink`, one trace end to end.

A change is submitted with `sdlcflow submit` to a `run processors` worker (its own app id, data
dir and repository prefix) and an `audit sink` (its own group, started at the end of the
topics), both with --metrics-port and SDLCFLOW_TRACING=file:<path>; SDK agents in this process
record spans in the SDK's in-memory exporter. Every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from sdlcflow.agents import (
    AgentDefinition,
    AgentIdentity,
    PolicyOutcome,
    TaskContract,
    TaskResult,
    VerifiedState,
    Worker,
    agent,
    context,
)
from sdlcflow.core.events import ActorKind, PolicyDecision
from sdlcflow.demo.services import Services
from sdlcflow.demo.stage import audited_topics
from sdlcflow.demo.watch import start_group_at_end
from sdlcflow.infra.topics import BrokerFootprint, forgotten_at_exit
from sdlcflow.observability import spans
from sdlcflow.processors.engine import INPUT_TOPICS
from sdlcflow.processors.testing import TestIssuer
from sdlcflow.streams.topics import task_topic

pytestmark = pytest.mark.integration

WAIT_S = 90.0
CAPABILITIES = ("test", "policy", "promote")
REVISION = "obs-test-policy-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics endpoint, keyed by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scraped(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`scrape`, or nothing while the endpoint is not up yet (a condition to wait on)."""
    try:
        return scrape(port)
    except OSError:
        return {}


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(what: str, check: Callable[[], bool], services: Services) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        services.check()  # a dead service fails the test with its log, at once
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


def span_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _agents() -> list[AgentDefinition]:
    def result(capability: str) -> TaskResult:
        lease = context().lease
        verified = VerifiedState(
            head_sha=lease.input("head"), base_sha=lease.input("base"),
            lockfile_digest=lease.input("lockfile"),
        )  # fmt: skip
        if capability == "policy":
            return TaskResult(
                verified=VerifiedState(**{**asdict(verified), "policy_revision": REVISION}),
                policy=PolicyOutcome(PolicyDecision.PASS, True, REVISION, "sha256:obs-evidence"),
            )
        if capability == "promote":
            digest = "sha256:obs-artifact"
            return TaskResult(
                verified=VerifiedState(**{**asdict(verified), "artifact_digest": digest})
            )
        return TaskResult()

    definitions = []
    for capability in CAPABILITIES:

        async def handle(task: TaskContract, capability: str = capability) -> TaskResult:
            return result(capability)

        handle.__name__ = f"obs_{capability}"
        definitions.append(agent(capability)(handle))
    return definitions  # type: ignore[return-value]


@dataclass
class Run:
    """The services of one watched run and where their spans and metrics are."""

    prefix: str
    services: Services
    processors_port: int
    audit_port: int
    spans_dir: Path
    issuer: TestIssuer
    bootstrap: str


@pytest.fixture(scope="module")
def run(
    kafka_bootstrap: str, cassandra_session: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("watching")
    tag = uuid.uuid4().hex[:8]
    issuer = TestIssuer.new()
    trust = issuer.write_trust_file(tmp / "trusted-issuers.json")
    processors_port, audit_port = free_port(), free_port()
    env = {"SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap}
    with forgotten_at_exit(kafka_bootstrap) as footprint, Services(tmp / "logs", env) as services:
        app_id = footprint.app(f"test-obs-{tag}")
        group = footprint.group(f"test-obs-audit-{tag}")
        start_group_at_end(kafka_bootstrap, app_id, INPUT_TOPICS)
        start_group_at_end(kafka_bootstrap, group, audited_topics(kafka_bootstrap))
        services.start_cli(
            "processors",
            [
                "run", "processors", "--app-id", app_id, "--data-dir", str(tmp / "data"),
                "--trusted-issuers", str(trust), "--repos", f"obs-{tag}/*",
                "--tick-interval-ms", "200", "--metrics-port", str(processors_port),
                "--log-format", "json",
            ],
            {"SDLCFLOW_TRACING": f"file:{tmp / 'processors.jsonl'}"},
        )  # fmt: skip
        services.start_cli(
            "audit",
            ["audit", "sink", "--group", group, "--metrics-port", str(audit_port)],
            {"SDLCFLOW_TRACING": f"file:{tmp / 'audit.jsonl'}"},
        )
        yield Run(
            f"obs-{tag}/", services, processors_port, audit_port, tmp, issuer, kafka_bootstrap
        )


@pytest.fixture
async def agents(run: Run, footprint: BrokerFootprint) -> AsyncIterator[InMemorySpanExporter]:
    """SDK agents of the run's repositories, recording spans in memory."""
    exporter = InMemorySpanExporter()
    spans.configure("sdlcflow-agent", exporter)
    signed = run.issuer.actor(
        "obs-agent", kind=ActorKind.AGENT, capabilities=CAPABILITIES, repos=(f"{run.prefix}*",),
        issued_at=int(time.time() * 1000) - 1_000,
    )  # fmt: skip
    group = footprint.group(f"test-obs-agents-{uuid.uuid4().hex[:8]}")
    start_group_at_end(run.bootstrap, group, [task_topic(c) for c in CAPABILITIES])
    worker = Worker(
        _agents(), repos=[f"{run.prefix}*"], bootstrap=run.bootstrap, group_id=group, concurrency=4,
        identity=AgentIdentity(signed.credential, key=signed.key), drain_timeout_s=0,
    )  # fmt: skip
    async with worker:
        serving = asyncio.ensure_future(worker.run())
        try:
            yield exporter
        finally:
            worker.stop()
            await asyncio.wait_for(serving, 30)
            spans.shutdown()


def submit(run: Run, repo: str) -> str:
    """`sdlcflow submit` a bench-chain change; returns its trace id."""
    argv = [
        sys.executable, "-m", "sdlcflow.cli", "submit", "--repo", repo, "--base", "b" * 40,
        "--head", "c" * 40, "--kind", "code-change", "--pipeline", "bench-chain",
        "--bootstrap", run.bootstrap, "--json",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return str(json.loads(done.stdout)["trace_id"])


class TestWatchingARun:
    """A change run through real services is visible in metrics, spans and logs."""

    async def test_metrics_and_one_trace_cover_the_change(
        self, run: Run, agents: InMemorySpanExporter
    ) -> None:
        repo = f"{run.prefix}login"
        trace_id = submit(run, repo)

        def promoted() -> bool:
            return (
                value(scraped(run.processors_port), "sdlcflow_changes_total", outcome="promoted")
                >= 1
            )

        await until("the change to be promoted (processors /metrics)", promoted, run.services)
        processors = scrape(run.processors_port)
        assert value(processors, "sdlcflow_leases_total", outcome="granted") >= 3
        assert value(processors, "sdlcflow_tasks_completed_total", capability="test") >= 1
        assert (
            value(processors, "sdlcflow_policy_decisions_total", decision="PASS", enforced="true")
            >= 1
        )
        assert (
            value(
                processors,
                "sdlcflow_task_enqueue_to_completion_seconds_count",
                capability="promote",
            )
            >= 1
        )
        assert value(processors, "sdlcflow_change_duration_seconds_count", outcome="promoted") == 1
        assert value(processors, "sdlcflow_events_handled_total", component="processors") >= 7

        coordinator = [
            s for s in span_lines(run.spans_dir / "processors.jsonl") if s["trace_id"] == trace_id
        ]
        agent_spans = [
            s for s in agents.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id
        ]
        names = {s["name"] for s in coordinator}
        assert {
            "coordinator ChangeRequested",
            "coordinator LeaseRequested",
            "coordinator TaskSucceeded",
        } <= names
        assert {s.name for s in agent_spans} == {f"agent {c}" for c in CAPABILITIES}
        # the agent's span is the child of the coordinator span that published the offer,
        # and the coordinator's span of the agent's request is the child of the agent's span
        coordinator_ids = {s["span_id"] for s in coordinator}
        agent_ids = {f"{s.context.span_id:016x}" for s in agent_spans}
        assert all(f"{s.parent.span_id:016x}" in coordinator_ids for s in agent_spans if s.parent)
        requests = [s for s in coordinator if s["name"] == "coordinator LeaseRequested"]
        assert {s["parent_span_id"] for s in requests} <= agent_ids

        audit_spans = run.spans_dir / "audit.jsonl"

        def audited() -> bool:
            stored = [s for s in span_lines(audit_spans) if s["trace_id"] == trace_id]
            parents = {s["parent_span_id"] for s in stored}
            return bool(parents & coordinator_ids) and bool(parents & agent_ids)

        await until(
            "the audit sink's spans of the coordinator's and agent's events", audited, run.services
        )
        audit = scrape(run.audit_port)
        assert value(audit, "sdlcflow_audit_events_stored_total", group=_group(run)) > 0

        def lag_watched() -> bool:
            samples = scraped(run.audit_port)
            return any(name == "sdlcflow_consumer_lag_messages" for name, _ in samples) and any(
                name == "sdlcflow_dead_letter_messages" for name, _ in samples
            )

        await until(
            "consumer lag and dead-letter size on the sink's /metrics", lag_watched, run.services
        )

        log = (run.spans_dir / "logs" / "processors.log").read_text()
        assert any(line.startswith("{") and '"level"' in line for line in log.splitlines())


def _group(run: Run) -> str:
    return "test-obs-audit-" + run.prefix.removeprefix("obs-").rstrip("/")


class TestStatus:
    """`sdlcflow status --json` shows the run's groups, partitions, lag and live leases."""

    def test_status_reports_partitions_lag_dead_letters_and_leases(self, run: Run) -> None:
        app_id = "test-obs-" + run.prefix.removeprefix("obs-").rstrip("/")
        url = f"http://127.0.0.1:{run.processors_port}/metrics"

        def owned(document: dict[str, Any]) -> list[str]:
            (group,) = [g for g in document["services"]["groups"] if g["group"] == app_id]
            return [p for member in group["members"] for p in member["partitions"]]

        deadline = time.monotonic() + WAIT_S
        while True:
            argv = [sys.executable, "-m", "sdlcflow.cli", "status", "--json"]
            argv += ["--group", app_id, "--group", _group(run), "--metrics", url]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            document = json.loads(done.stdout)
            if owned(document) or time.monotonic() > deadline:
                break
            run.services.check()
        services = document["services"]
        assert services["problems"] == []
        assert {f"sdlc.change-requests:{p}" for p in range(12)} <= set(owned(document))
        assert isinstance(services["dead_letter_size"], int)
        assert isinstance(services["live_leases"], dict)
        (audit,) = [g for g in services["groups"] if g["group"] == _group(run)]
        assert audit["members"] and set(audit["lag_by_topic"]) >= {"sdlc.coordinator"}
