"""`sdlcflow policy mode` publishes a signed, reasoned PolicyModeChanged on the real broker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdlcflow.approvals.testing import issue_reviewer
from sdlcflow.cli import cli
from sdlcflow.core import events as ev
from sdlcflow.core.events import ActorKind
from sdlcflow.demo.watch import LogWatch
from sdlcflow.identity import generate_key_pair, verify_event
from sdlcflow.policy.modes import Mode, ModeChange
from sdlcflow.streams.topics import AGENT_EVENTS

pytestmark = pytest.mark.integration


class TestPolicyModeCommand:
    """The switch lands on sdlc.agent-events with who, when and why, signed by the operator."""

    def test_switch_is_published_signed_with_its_reason(
        self, kafka_bootstrap: str, tmp_path: Path
    ) -> None:
        repo = f"mode-cli/{uuid.uuid4().hex[:8]}"
        issuer = generate_key_pair("ops-issuer-mode")
        oscar = issue_reviewer(
            tmp_path, "oscar", issuer, kind=ActorKind.OPS, capabilities=("policy-admin",)
        )
        with LogWatch(kafka_bootstrap, repo, topics=(AGENT_EVENTS,)) as watch:
            before = int(time.time() * 1000)
            result = CliRunner().invoke(
                cli,
                ["policy", "mode", "auth_paths", "audit", "--reason", "noisy on monorepos",
                 "--repo", repo, "--key", str(oscar.key_file), "--credential",
                 str(oscar.credential_file), "--json"],
                env={"SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap},
                catch_exceptions=False,
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            seen = watch.wait_for(
                "the PolicyModeChanged",
                lambda e: isinstance(e.payload, ev.PolicyModeChanged),
                timeout_s=30,
                hint="the command publishes to sdlc.agent-events keyed by --repo",
            )
        assert seen.payload == ev.PolicyModeChanged("auth_paths", False, "noisy on monorepos")
        assert seen.envelope.signature is not None and seen.envelope.credential == oscar.token
        verify_event(seen.envelope, seen.payload, seen.envelope.signature, oscar.key.public_key)
        change = ModeChange.from_event(seen.envelope, seen.payload)
        assert (change.policy, change.mode, change.actor) == ("auth_paths", Mode.AUDIT, "oscar")
        assert change.at_ms >= before
