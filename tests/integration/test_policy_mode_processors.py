"""A policy mode switch takes effect through a real `sdlcflow run processors` worker: a failing
policy in audit mode lets a change pass; after `sdlcflow policy mode ... enforce` the next
change of the repository is blocked, because the coordinator's offer carries the mode.

Reuses the approvals test's worker and stage (own app id, fresh data dir, `--repos
'<prefix>*'`); the scripted policy agent decides its mode with the policy binding's own
`policy_modes(offer.policy_modes)` over an audit default, and always finds a FAIL.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_approvals_processors import Stage, Worker, now_ms, of, stage, worker

from sdlcflow.agents.bindings.policy import MODE_ENV, policy_modes
from sdlcflow.approvals.testing import issue_reviewer
from sdlcflow.cli import cli
from sdlcflow.core import events as ev
from sdlcflow.core.events import ActorKind, Event
from sdlcflow.policy.modes import Mode
from sdlcflow.processors.testing import change_request
from sdlcflow.streams.topics import CHANGE_REQUESTS

pytestmark = pytest.mark.integration

__all__ = ["stage", "worker"]  # the approvals module's fixtures, used here as they are

POLICY = "tests_on_head"
EARLY_STEPS = ("lint", "test", "policy")


class PolicyStage(Stage):
    """The approvals stage whose policy step always FAILs, enforced as the offer's modes say."""

    def result(self, granted: Event, grant: ev.LeaseGranted) -> ev.TaskSucceeded:
        base = super().result(granted, grant)
        task_id = granted.envelope.task_id
        if not (task_id or "").endswith("/policy"):
            return base
        offers = [e.payload for e in self.watch.events() if e.envelope.task_id == task_id]
        offer = [p for p in offers if isinstance(p, ev.TaskOffered)][-1]
        mode = policy_modes(offer.policy_modes).mode_of(POLICY)
        outcome = ev.PolicyOutcome(
            ev.PolicyDecision.FAIL,
            mode is Mode.ENFORCE,
            "bundle-1",
            self.evidence_digest,
            (f"{POLICY}: no test result for the head",),
        )
        return dataclasses.replace(base, policy=outcome)

    def next_change(self) -> PolicyStage:
        """A second change of the same repository, answered the same way."""
        planned = self.watch.events(of(self.change_id, ev.ChangePlanned))[0].payload
        assert isinstance(planned, ev.ChangePlanned)
        change_id = str(uuid.uuid4())
        request = change_request(
            self.repo,
            at=now_ms(),
            change_id=change_id,
            head_sha=planned.state.head_sha,
            base_sha=planned.state.base_sha,
        )
        self.publisher.publish(CHANGE_REQUESTS, request)
        self.publisher.flush()
        return dataclasses.replace(self, change_id=change_id)


def passed_or_blocked(change_id: str) -> object:
    """The change was blocked, or a step after the policy step was offered."""

    def match(event: Event) -> bool:
        if of(change_id, ev.ChangeBlocked)(event):
            return True
        step = (event.envelope.task_id or "").rsplit("/", 1)[-1]
        return of(change_id, ev.TaskOffered)(event) and step not in EARLY_STEPS

    return match


class TestPolicyModeSwitchThroughTheWorker:
    """`sdlcflow policy mode` changes what the next change's policy step enforces."""

    def test_audit_lets_a_failing_change_pass_and_enforce_blocks_the_next(
        self, stage: Stage, worker: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(MODE_ENV, "audit")
        first = PolicyStage(**{f.name: getattr(stage, f.name) for f in dataclasses.fields(stage)})
        passed = first.wait("the first change past its policy", passed_or_blocked(first.change_id))
        assert isinstance(passed.payload, ev.TaskOffered), passed.payload
        assert passed.payload.policy_modes == {}
        audited = first.watch.events(of(first.change_id, ev.PolicyEvaluated))
        assert [e.payload.enforced for e in audited] == [False]  # type: ignore[union-attr]

        ops = issue_reviewer(
            tmp_path / "ops", "oscar", worker.issuer.key, kind=ActorKind.OPS,
            capabilities=("policy-admin",),
        )  # fmt: skip
        result = CliRunner().invoke(
            cli,
            ["policy", "mode", POLICY, "enforce", "--reason", "rollout verified",
             "--repo", first.repo, "--key", str(ops.key_file),
             "--credential", str(ops.credential_file), "--json"],
            env=first.env, catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        switched = first.wait(
            "the accepted mode switch",
            lambda e: (
                isinstance(e.payload, (ev.PolicyModeSet, ev.EventRejected))
                and e.envelope.actor.kind is ActorKind.COORDINATOR
                and e.envelope.change_id is None
            ),
        )
        assert switched.payload == ev.PolicyModeSet(POLICY, True, "rollout verified", "oscar")

        second = first.next_change()
        blocked = second.wait("the second change blocked", passed_or_blocked(second.change_id))
        assert isinstance(blocked.payload, ev.ChangeBlocked), blocked.payload
        assert POLICY in blocked.payload.reason
        offers = second.watch.events(of(second.change_id, ev.TaskOffered, step="policy"))
        assert [e.payload.policy_modes for e in offers] == [{POLICY: True}]  # type: ignore[union-attr]
