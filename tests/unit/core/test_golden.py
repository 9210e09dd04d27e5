"""Golden log: a fixed input log must keep producing exactly the recorded decisions.

This guards the meaning of released handlers: if a change here is intended, add a versioned
handler for new events instead of editing the old one, or regenerate deliberately with
SDLCFLOW_REGENERATE_GOLDEN=1 and explain why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from core_world import CONFIG, World

from sdlcflow.core import events as ev
from sdlcflow.core.codec import event_from_plain, event_to_plain
from sdlcflow.core.decider import handle
from sdlcflow.core.fold import evolve
from sdlcflow.core.state import RepoState

GOLDEN = Path(__file__).parent / "golden" / "incident_v1.json"


def _play_scenario() -> World:
    """Two overlapping changes, an expired lease, a stale result, a retry, a review, a landing."""
    world = World()
    world.request(
        "auth-bump",
        template="dependency-upgrade",
        head="a1",
        lockfile="lock-2",
        paths=("requirements.lock",),
        resources=("auth-lib",),
        labels=("major",),
    )
    world.request("env-rename", head="e1", paths=("config/settings.py",), resources=("AUTH_URL",))
    world.lease("auth-bump", "lint", "slow-linter")
    world.advance(31_000)
    world.run_step("auth-bump", "lint", "linter")
    world.succeed("auth-bump", "lint", "slow-linter", epoch=1, lease_id="stale")
    world.lease("auth-bump", "test", "tester")
    world.fail("auth-bump", "test", "tester")
    world.advance(5_000)
    world.run_step(
        "auth-bump", "test", "tester", verified=ev.VerifiedState("a1", "b0", "lock-2", "art-a1")
    )
    world.run_step("auth-bump", "scan", "scanner")
    world.run_step(
        "auth-bump", "policy", "policy-bot", policy=world.policy(ev.PolicyDecision.REVIEW)
    )
    world.approve("auth-bump", "alice")
    world.run_step("env-rename", "lint", "linter")
    world.run_step("env-rename", "test", "tester")
    world.run_step(
        "env-rename", "policy", "policy-bot", policy=world.policy(ev.PolicyDecision.PASS)
    )
    world.lease("env-rename", "merge", "merger")
    world.run_step("auth-bump", "merge", "merger", touched=ev.Outputs(paths=("requirements.lock",)))
    world.run_step("auth-bump", "promote", "deployer", touched=ev.Outputs(environments=("prod",)))
    return world


def _regenerate() -> None:
    world = _play_scenario()
    body = {
        "inputs": [event_to_plain(e, with_scope=True) for e in world.inputs],
        "decisions": [event_to_plain(e) for e in world.log],
    }
    GOLDEN.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if os.environ.get("SDLCFLOW_REGENERATE_GOLDEN") == "1":  # pragma: no cover - deliberate only
    _regenerate()


class TestGoldenLog:
    """The recorded input log still yields the recorded decisions, byte for byte."""

    def test_recorded_inputs_produce_recorded_decisions(self) -> None:
        body = json.loads(GOLDEN.read_text(encoding="utf-8"))
        state = RepoState()
        produced = []
        for plain in body["inputs"]:
            state, out = handle(state, event_from_plain(plain), CONFIG)
            produced.extend(out)
        assert len(produced) == len(body["decisions"])
        # compared as events, so fields added later with a default (schemas/README.md) read
        # from the old log exactly as they are produced today
        for index, (got, want) in enumerate(zip(produced, body["decisions"], strict=True)):
            assert got == event_from_plain(want), f"decision #{index} ({got.type}) changed"

    def test_golden_scenario_covers_the_interesting_decisions(self) -> None:
        types = {d["envelope"]["type"] for d in json.loads(GOLDEN.read_text())["decisions"]}
        assert {
            "ConflictDetected",
            "LeaseExpired",
            "ResultRejected",
            "RetryScheduled",
            "ApprovalAccepted",
            "ChangePromoted",
            "ChangeRevised",
            "ResourceLeaseGranted",
        } <= types

    def test_recorded_decisions_fold_to_the_state_the_inputs_lead_to(self) -> None:
        body = json.loads(GOLDEN.read_text(encoding="utf-8"))
        live = RepoState()
        for plain in body["inputs"]:
            live, _ = handle(live, event_from_plain(plain), CONFIG)
        folded = RepoState()
        for plain in body["decisions"]:
            folded = evolve(folded, event_from_plain(plain))
        assert folded == live
