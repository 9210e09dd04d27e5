"""Backtest from the audit store's recorded policy results, `--since` parsing, and the signed
mode switch that must say why."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdlcflow.agents.bindings.policy import evaluation_record
from sdlcflow.audit.model import AuditRow
from sdlcflow.audit.rows import render_json
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.identity import (
    generate_key_pair,
    issue_credential,
    save_private_key,
    verify_event,
)
from sdlcflow.identity.credentials import CredentialClaims
from sdlcflow.policy.backtest import (
    AuditInputSource,
    BacktestInputError,
    Change,
    backtest,
    parse_since_ms,
)
from sdlcflow.policy.commands import SHIPPED_BUNDLE, policy
from sdlcflow.policy.engine import PolicyEngine
from sdlcflow.policy.inputs import PolicyInput
from sdlcflow.policy.modes import Mode, ModeChange
from sdlcflow.policy.rollout import ModeChangeError, Operator, mode_change_event

HEAD = "a" * 40
NOW = 1_800_000_000_000


def policy_input(change_id: str, path: str) -> PolicyInput:
    return PolicyInput.model_validate(
        {
            "repo": "acme/shop",
            "change_id": change_id,
            "base_sha": "b" * 40,
            "head_sha": HEAD,
            "files_changed": [{"path": path}],
            "test_results": [{"suite": "unit", "status": "passed", "sha": HEAD}],
        }
    )


def policy_result(
    engine: PolicyEngine, repo: str, change_id: str, path: str, *, keep: bool = True
) -> Event:
    """The TaskSucceeded a policy agent publishes, as the audit sink stores it."""
    document = policy_input(change_id, path)
    decision = engine.evaluate(document)
    outcome = ev.PolicyOutcome(
        decision.outcome,
        True,
        decision.bundle_digest,
        "sha256:evidence",
        decision.reasons(),
        decision.required_approvals,
        evaluation_record(document, decision) if keep else "",
    )
    envelope = Envelope(
        event_id=f"ev-{change_id}",
        type="TaskSucceeded",
        occurred_at=NOW - 1_000,
        repo=repo,
        change_id=change_id,
        task_id=f"{change_id}/policy",
        trace_id="t",
        causation_id=None,
        actor=Actor(ActorKind.AGENT, "policy-bot"),
    )
    payload = ev.TaskSucceeded("lease", 1, (), ev.Outputs(), policy=outcome)
    return Event(envelope, payload)


def row(event: Event) -> AuditRow:
    e = event.envelope
    return AuditRow(
        event_id=e.event_id,
        event_type=e.type,
        occurred_at=e.occurred_at,
        repo=e.repo,
        change_id=e.change_id,
        task_id=e.task_id,
        trace_id=e.trace_id,
        causation_id=None,
        actor_kind=e.actor.kind.value,
        actor_id=e.actor.id,
        outcome="",
        before_sha=None,
        after_sha=None,
        topic="sdlc.agent-events",
        partition=0,
        offset=0,
        json=render_json(event),
        avro=b"",
    )


class FakeRows:
    """The audit reader over stored policy results; each result (except a lint one) also has
    the PolicyEvaluated it caused, filed under policy `*`."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.results = {e.event_id: row(e) for e in events}
        self.asked: list[tuple[str, str]] = []

    def by_repo(self, repo: str, since_ms: int, until_ms: int) -> list[AuditRow]:
        self.asked.append(("repo", repo))
        return [r for r in self.results.values() if r.repo == repo and r.occurred_at >= since_ms]

    def by_policy(self, policy: str, since_ms: int, until_ms: int) -> list[AuditRow]:
        self.asked.append(("policy", policy))
        return [
            dataclasses.replace(
                r,
                event_id=f"pe-{r.event_id}",
                event_type="PolicyEvaluated",
                causation_id=r.event_id,
            )
            for r in self.results.values()
            if r.occurred_at >= since_ms and '"policy":{' in r.json
        ]

    def by_id(self, event_id: str) -> AuditRow | None:
        return self.results.get(event_id)


@pytest.fixture(scope="module")
def shipped() -> PolicyEngine:
    return PolicyEngine.load(SHIPPED_BUNDLE)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> PolicyEngine:
    """The shipped bundle plus a policy that fails any README change."""
    root = tmp_path_factory.mktemp("strict")
    for source in SHIPPED_BUNDLE.iterdir():
        if source.suffix in (".rego", ".json"):
            (root / source.name).write_text(source.read_text(encoding="utf-8"))
    (root / "docs.rego").write_text(
        "package sdlcflow.policies.docs\nimport rego.v1\n\n"
        'deny contains "README changes need the docs team" if {\n'
        "\tsome f in input.files_changed\n"
        '\tendswith(f.path, "README.md")\n}\n'
    )
    return PolicyEngine.load(root)


class TestAuditInputSource:
    """Recorded policy results come back from audit rows as backtest records."""

    def test_policy_results_in_the_window_are_re_evaluated(
        self, shipped: PolicyEngine, strict: PolicyEngine
    ) -> None:
        rows = FakeRows(
            [
                policy_result(shipped, "acme/shop", "c-readme", "README.md"),
                policy_result(shipped, "acme/shop", "c-cart", "src/shop/cart.py"),
            ]
        )
        source = AuditInputSource(rows, NOW, ())
        report = backtest(source.records(NOW - 3_600_000), strict)
        by_change = {e.change_id: e for e in report.entries}
        assert by_change["c-readme"].change is Change.NEWLY_BLOCKED
        assert by_change["c-readme"].added == ("docs: README changes need the docs team",)
        assert by_change["c-cart"].change is Change.UNCHANGED
        assert rows.asked == [("policy", "*")]

    def test_named_repositories_are_read_from_their_own_partitions(
        self, shipped: PolicyEngine
    ) -> None:
        rows = FakeRows(
            [
                policy_result(shipped, "acme/shop", "c-1", "a.py"),
                policy_result(shipped, "acme/other", "c-2", "a.py"),
            ]
        )
        records = list(AuditInputSource(rows, NOW, ("acme/shop",)).records(0))
        assert [r.input["change_id"] for r in records] == ["c-1"]
        assert rows.asked == [("repo", "acme/shop")]

    def test_other_repos_non_policy_results_and_unkept_inputs_are_left_out(
        self, shipped: PolicyEngine
    ) -> None:
        lint = policy_result(shipped, "acme/shop", "c-lint", "a.py")
        lint = Event(lint.envelope, ev.TaskSucceeded("lease", 1, (), ev.Outputs()))
        source = AuditInputSource(
            FakeRows(
                [
                    policy_result(shipped, "acme/shop", "c-1", "a.py"),
                    policy_result(shipped, "other/repo", "c-2", "a.py"),
                    policy_result(shipped, "acme/shop", "c-3", "a.py", keep=False),
                    lint,
                ]
            ),
            NOW,
            ("acme/*",),
        )
        records = list(source.records(0))
        assert [r.input["change_id"] for r in records] == ["c-1"]
        assert records[0].recorded_at == NOW - 1_000
        assert source.skipped == 1

    def test_the_audit_store_needs_a_window(self) -> None:
        with pytest.raises(BacktestInputError, match="--since"):
            list(AuditInputSource(FakeRows([]), NOW).records(None))


class TestSinceParsing:
    """`--since` takes a window back from now or an ISO time."""

    def test_window_and_iso_times(self) -> None:
        assert parse_since_ms("2h", NOW) == NOW - 7_200_000
        assert parse_since_ms("2026-11-20T00:00:00+00:00", NOW) == 1_795_132_800_000
        assert parse_since_ms("2026-11-20", NOW) == 1_795_132_800_000

    def test_nonsense_names_both_forms(self) -> None:
        with pytest.raises(BacktestInputError, match="neither a window"):
            parse_since_ms("last tuesday", NOW)


def operator(tmp_path: Path, kind: ActorKind = ActorKind.OPS) -> tuple[Path, str]:
    issuer = generate_key_pair("ops-issuer")
    pair = generate_key_pair("oscar")
    key_file = tmp_path / "oscar.key"
    save_private_key(pair, key_file)
    claims = CredentialClaims(
        credential_id="cred-1",
        subject="oscar",
        kind=kind,
        capabilities=("policy-admin",),
        repos=("acme/*",),
        paths=("*",),
        environments=(),
        issued_at=NOW - 1_000,
        expires_at=NOW + 3_600_000,
        issuer_key_id="ops-issuer",
        actor_key=pair.public_key_b64,
    )
    return key_file, issue_credential(claims, issuer)


class TestModeSwitch:
    """A policy's mode switch is a signed ops event that must carry a reason."""

    def test_switch_is_signed_and_reads_back_with_who_when_and_why(self, tmp_path: Path) -> None:
        key_file, token = operator(tmp_path)
        oscar = Operator.load(key_file, token)
        event = mode_change_event(
            oscar,
            policy="auth_paths",
            mode=Mode.AUDIT,
            reason=" rolling out ",
            repo="acme/shop",
            now_ms=NOW,
        )
        assert event.payload == ev.PolicyModeChanged("auth_paths", False, "rolling out")
        assert event.envelope.actor == Actor(ActorKind.OPS, "oscar")
        assert event.envelope.signature is not None
        verify_event(event.envelope, event.payload, event.envelope.signature, oscar.key.public_key)
        change = ModeChange.from_event(event.envelope, event.payload)
        assert (change.actor, change.at_ms, change.reason) == ("oscar", NOW, "rolling out")

    def test_blank_reason_is_refused(self, tmp_path: Path) -> None:
        key_file, token = operator(tmp_path)
        with pytest.raises(ModeChangeError, match="needs a reason"):
            mode_change_event(
                Operator.load(key_file, token),
                policy="auth_paths",
                mode=Mode.ENFORCE,
                reason="  ",
                repo="acme/shop",
                now_ms=NOW,
            )

    def test_reviewer_credential_cannot_switch_modes(self, tmp_path: Path) -> None:
        key_file, token = operator(tmp_path, ActorKind.HUMAN)
        with pytest.raises(ModeChangeError, match="needs an ops credential"):
            Operator.load(key_file, token)

    def test_cli_requires_the_reason(self, tmp_path: Path) -> None:
        key_file, token = operator(tmp_path)
        args = ["mode", "auth_paths", "audit", "--repo", "acme/shop", "--key", str(key_file)]
        result = CliRunner().invoke(policy, [*args, "--credential", token])
        assert result.exit_code == 2
        assert "Missing option '--reason'" in result.output

    def test_evaluation_record_is_the_jsonl_shape(self, shipped: PolicyEngine) -> None:
        document = policy_input("c-1", "README.md")
        record = json.loads(evaluation_record(document, shipped.evaluate(document)))
        assert set(record) == {"input", "decision"}
        assert record["input"]["change_id"] == "c-1"
