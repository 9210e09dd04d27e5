"""`sdlcflow policy backtest --since` re-evaluates policy results stored in the real Cassandra
audit store under a candidate bundle and reports the decisions that would change."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sdlcflow.agents.bindings.policy import evaluation_record
from sdlcflow.audit.rows import Origin, audit_record, placements
from sdlcflow.audit.store import AuditStore, connect
from sdlcflow.audit.writes import rows_of
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.policy.commands import SHIPPED_BUNDLE, policy
from sdlcflow.policy.engine import PolicyEngine
from sdlcflow.policy.inputs import PolicyInput
from sdlcflow.settings import Settings
from sdlcflow.streams.wire import EventCodec

pytestmark = pytest.mark.integration
HEAD = "c" * 40


@pytest.fixture
def store(settings: Settings) -> Iterator[AuditStore]:
    cluster, session = connect(settings)
    try:
        yield AuditStore(session, settings.keyspace, max_in_flight=16)
    finally:
        cluster.shutdown()


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    """The shipped bundle plus a policy that fails any README change."""
    root = tmp_path / "candidate"
    root.mkdir()
    for source in SHIPPED_BUNDLE.iterdir():
        if source.suffix in (".rego", ".json"):
            (root / source.name).write_text(source.read_text(encoding="utf-8"))
    (root / "docs.rego").write_text(
        "package sdlcflow.policies.docs\nimport rego.v1\n\n"
        'deny contains "README changes need the docs team" if {\n'
        "\tsome f in input.files_changed\n"
        '\tendswith(f.path, "README.md")\n}\n'
    )
    return root


def policy_result(repo: str, change_id: str, path: str, at_ms: int) -> Event:
    """What the policy agent publishes for one change, evaluated by the shipped bundle."""
    document = PolicyInput.model_validate(
        {
            "repo": repo,
            "change_id": change_id,
            "base_sha": "d" * 40,
            "head_sha": HEAD,
            "files_changed": [{"path": path}],
            "test_results": [{"suite": "unit", "status": "passed", "sha": HEAD}],
        }
    )
    decision = PolicyEngine.load(SHIPPED_BUNDLE).evaluate(document)
    outcome = ev.PolicyOutcome(
        decision.outcome,
        True,
        decision.bundle_digest,
        "sha256:evidence",
        decision.reasons(),
        decision.required_approvals,
        evaluation_record(document, decision),
    )
    envelope = Envelope(
        event_id=f"{change_id}-policy",
        type="TaskSucceeded",
        occurred_at=at_ms,
        repo=repo,
        change_id=change_id,
        task_id=f"{change_id}/policy",
        trace_id=hashlib.md5(change_id.encode()).hexdigest(),  # a W3C trace id, as on the wire
        causation_id=None,
        actor=Actor(ActorKind.AGENT, "policy-bot"),
    )
    return Event(envelope, ev.TaskSucceeded("lease", 1, (), ev.Outputs(), policy=outcome))


def evaluated(result: Event) -> Event:
    """The PolicyEvaluated the coordinator decides on a policy result (caused by it)."""
    outcome = result.payload.policy  # type: ignore[union-attr]
    assert outcome is not None
    envelope = dataclasses.replace(
        result.envelope,
        event_id=f"{result.event_id}-evaluated",
        type="PolicyEvaluated",
        causation_id=result.event_id,
        actor=Actor(ActorKind.COORDINATOR, "coordinator"),
    )
    state = ev.VerifiedState(HEAD, "d" * 40)
    payload = ev.PolicyEvaluated(
        outcome.decision, True, state, outcome.evidence_digest, outcome.reasons
    )
    return Event(envelope, payload)


def stored(store: AuditStore, events: list[Event]) -> None:
    codec = EventCodec()  # the store keeps the Avro bytes; JSON is rendered from them
    rows = [
        row
        for offset, event in enumerate(events)
        for row in rows_of(
            audit_record(event, codec.encode(event), Origin("sdlc.agent-events", 0, offset)),
            placements(event),
        )
    ]
    assert store.write(rows)


class TestBacktestFromTheAuditStore:
    """Past decisions in Cassandra are replayed against a candidate bundle."""

    def test_newly_blocked_and_unchanged_decisions_are_reported(
        self,
        store: AuditStore,
        settings: Settings,
        candidate: Path,
        unique_name: object,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        repo = f"backtest/{unique_name('repo')}"  # type: ignore[operator]
        now = int(time.time() * 1000)
        results = [
            policy_result(repo, f"{repo}-readme", "README.md", now - 60_000),
            policy_result(repo, f"{repo}-auth", "src/auth/tokens.py", now - 30_000),
            policy_result(repo, f"{repo}-old", "README.md", now - 3 * 3_600_000),
        ]
        stored(store, [*results, *(evaluated(r) for r in results)])
        monkeypatch.setenv("SDLCFLOW_CASSANDRA_HOSTS", ",".join(settings.cassandra_hosts))
        monkeypatch.setenv("SDLCFLOW_CASSANDRA_PORT", str(settings.cassandra_port))
        monkeypatch.setenv("SDLCFLOW_KEYSPACE", settings.keyspace)
        # by the repository's own partitions, and by the day's policy decisions (a glob)
        for repos in (repo, f"{repo}*"):
            result = CliRunner().invoke(
                policy,
                [
                    "backtest",
                    "--bundle",
                    str(candidate),
                    "--since",
                    "1h",
                    "--repo",
                    repos,
                    "--json",
                ],
            )
            assert result.exit_code == 0, result.output
            self.check(json.loads(result.stdout), repo)

    @staticmethod
    def check(report: dict[str, Any], repo: str) -> None:
        by_change = {e["change_id"]: e for e in report["entries"]}
        assert set(by_change) == {f"{repo}-readme", f"{repo}-auth"}  # the old one is outside
        readme = by_change[f"{repo}-readme"]
        assert (readme["old"], readme["new"], readme["change"]) == ("PASS", "FAIL", "newly_blocked")
        assert readme["added"] == ["docs: README changes need the docs team"]
        auth = by_change[f"{repo}-auth"]
        assert (auth["old"], auth["new"], auth["change"]) == ("REVIEW", "REVIEW", "unchanged")
        assert report["summary"]["newly_blocked"] == 1
