"""sdlcflow under load: `sdlcflow run processors` workers, the bench agents and an audit sink as
processes of their own, isolated from everything else on the shared broker by a repository
prefix, a unique app id (consumer group, changelog topics) and unique agent/sink groups."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from sdlcflow.agents import CREDENTIAL_ENV, KEY_ENV
from sdlcflow.bench.load import AutoApprover, DecisionObserver, KafkaSubmitter
from sdlcflow.bench.mix import CHECK_CAPABILITIES, MixSpec
from sdlcflow.bench.processes import ProcessSet
from sdlcflow.bench.record import RunRecord
from sdlcflow.core.events import REVIEW_CAPABILITY, ActorKind
from sdlcflow.demo.stage import audited_topics
from sdlcflow.demo.watch import start_group_at_end
from sdlcflow.identity import save_private_key
from sdlcflow.infra.topics import forget_on_broker
from sdlcflow.processors.config import StoreKind
from sdlcflow.processors.engine import INPUT_TOPICS
from sdlcflow.processors.testing import TestIssuer
from sdlcflow.streams.topics import task_topic

log = logging.getLogger(__name__)

CREDENTIAL_TTL_MS = 6 * 3600 * 1000


class SdlcflowSystem:
    """The coordinator under test, as a person would run it, with its own names."""

    name = "sdlcflow"

    def __init__(
        self,
        bootstrap: str,
        workdir: Path,
        procs: ProcessSet,
        *,
        workers: int = 1,
        agent_concurrency: int = 64,
        latency_ms: float = 0.0,
        mix: MixSpec | None = None,
        audit: bool = True,
        partitions: int | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.procs = procs
        self.workers = workers
        self.audit = audit
        self.env = {"SDLCFLOW_KAFKA_BOOTSTRAP": bootstrap}
        if partitions is not None:
            self.env["SDLCFLOW_PARTITIONS"] = str(partitions)
        self.mix = mix or MixSpec()
        self.record = RunRecord()
        run = uuid.uuid4().hex[:8]
        self.prefix = f"bench-{run}/"
        self.app_id = f"bench-{run}-coordinator"
        self.agent_group = f"bench-{run}-agents"
        self.audit_group = f"bench-{run}-audit"
        self.issuer = TestIssuer.new()
        now = int(time.time() * 1000) - 1000
        self.agent = self.issuer.actor(
            "bench-agent",
            capabilities=CHECK_CAPABILITIES,
            repos=(f"{self.prefix}*",),
            issued_at=now,
            ttl_ms=CREDENTIAL_TTL_MS,
        )
        self.reviewer = self.issuer.actor(
            "bench-reviewer",
            kind=ActorKind.HUMAN,
            capabilities=(REVIEW_CAPABILITY,),
            repos=(f"{self.prefix}*",),
            issued_at=now,
            ttl_ms=CREDENTIAL_TTL_MS,
        )
        self._agent_args = (agent_concurrency, latency_ms)
        self.submitter = KafkaSubmitter(bootstrap, self.record)
        self.approver = AutoApprover(bootstrap, self.reviewer)
        self.observer: DecisionObserver | None = None

    def start(self) -> None:
        trust = self.issuer.write_trust_file(self.workdir / "trusted-issuers.json")
        start_group_at_end(self.bootstrap, self.app_id, INPUT_TOPICS)
        for index in range(self.workers):
            self.procs.start(
                f"processors-{index}",
                [
                    "-m", "sdlcflow.cli", "run", "processors",
                    "--app-id", self.app_id,
                    "--data-dir", str(self.workdir / f"processors-{index}"),
                    "--store", StoreKind.ROCKSDB.value,
                    "--trusted-issuers", str(trust),
                    "--repos", f"{self.prefix}*",
                ],
                self.env,
            )  # fmt: skip
        self._start_agents()
        if self.audit:
            start_group_at_end(self.bootstrap, self.audit_group, audited_topics(self.bootstrap))
            self.procs.start(
                "audit-sink",
                ["-m", "sdlcflow.cli", "audit", "sink", "--group", self.audit_group],
                self.env,
            )
        self.observer = DecisionObserver(self.bootstrap, self.prefix, self.record, self.approver)

    def _start_agents(self) -> None:
        key_file = self.workdir / "bench-agent.key"
        save_private_key(self.agent.key, key_file)
        start_group_at_end(
            self.bootstrap, self.agent_group, [task_topic(c) for c in CHECK_CAPABILITIES]
        )
        concurrency, latency_ms = self._agent_args
        self.procs.start(
            "agents",
            [
                "-m", "sdlcflow.bench.agents",
                "--prefix", self.prefix,
                "--group", self.agent_group,
                "--concurrency", str(concurrency),
                "--latency-ms", str(latency_ms),
                "--seed", self.mix.seed,
                "--retry-rate", str(self.mix.retry_rate),
                "--dead-rate", str(self.mix.dead_rate),
                "--review-rate", str(self.mix.review_rate),
                "--stats-out", str(self.workdir / "agents-stats.json"),
            ],
            {
                **self.env,
                CREDENTIAL_ENV: self.agent.credential,
                KEY_ENV: str(key_file),
            },
        )  # fmt: skip

    # System protocol -----------------------------------------------------------------------

    def submit(self, change_id: str, repo: str, template: str, measured: bool) -> None:
        self.submitter.submit(change_id, repo, template, measured)

    def flush(self) -> None:
        self.submitter.flush()

    def wait_finished(self, changes: set[str], timeout_s: float) -> set[str]:
        assert self.observer is not None, "start() first"
        return self.observer.wait_finished(changes, timeout_s, self.check)

    def check(self) -> None:
        self.procs.check()

    # audit ----------------------------------------------------------------------------------

    def _audit_offsets(self) -> tuple[int, int]:
        """(committed by the run's sink, end of log) summed over the audited topics."""
        topics = audited_topics(self.bootstrap)
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.audit_group})
        try:
            metadata = consumer.list_topics(timeout=10).topics
            parts = [
                TopicPartition(t, p)
                for t in topics
                if t in metadata
                for p in metadata[t].partitions
            ]
            committed = end = 0
            for tp in consumer.committed(parts, timeout=10):
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                committed += max(tp.offset, 0)
                end += high
            return committed, end
        finally:
            consumer.close()

    def audit_lag(self) -> int:
        """Records on the audited topics the run's sink has not committed yet."""
        committed, end = self._audit_offsets()
        return max(0, end - committed)

    def audit_committed(self) -> int:
        """Records the run's sink has written and committed so far, over all audited topics."""
        return self._audit_offsets()[0]

    def audit_catch_up(self, timeout_s: float) -> dict[str, Any]:
        """After the load: the lag left, and how long the sink took to write it all."""
        started = time.monotonic()
        first = lag = self.audit_lag()
        while lag > 0 and time.monotonic() - started < timeout_s:
            time.sleep(1.0)
            lag = self.audit_lag()
        return {
            "lag_at_load_end_records": first,
            "catch_up_s": round(time.monotonic() - started, 1) if lag == 0 else None,
            "lag_left_records": lag,
        }

    # teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        if self.observer is not None:
            self.observer.close()
        self.approver.close()
        self.submitter.close()
        for name in list(self.procs.processes):
            self.procs.stop(name)
        self._forget()

    def _forget(self) -> None:
        """Delete the run's changelog topics and consumer groups from the shared broker; a
        broker that does not answer leaves them behind (named `bench-<run>-*`), nothing worse."""
        groups = [self.agent_group, self.audit_group]
        for problem in forget_on_broker(self.bootstrap, app_ids=[self.app_id], groups=groups):
            log.warning("could not delete the run's topics and groups: %s", problem)
