"""The end of the story: the incident's trail read back from Cassandra with the analysts' own
commands (`sdlcflow audit change/trace`, `sdlcflow report`), after checking every decision the
coordinator logged for the incident's changes reached the audit store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sdlcflow.demo.errors import MissingPiece, StepFailed
from sdlcflow.streams.topics import COORDINATOR

if TYPE_CHECKING:
    from sdlcflow.demo.scenario import Play

CLI_TIMEOUT_S = 120.0
POLL_S = 1.0


def sdlcflow_cli(play: Play, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run an `sdlcflow` command as a person would, with the run's environment."""
    # tables as wide as the person's terminal, less the narration's indent
    width = max(80, shutil.get_terminal_size().columns - 2)
    env = {**os.environ, **play.stage.services.base_env, "COLUMNS": str(width)}
    return subprocess.run(
        [sys.executable, "-m", "sdlcflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def event_ids(document: Any) -> Iterator[str]:
    """Every `event_id` anywhere in a JSON document (the audit commands' rows carry them)."""
    if isinstance(document, dict):
        value = document.get("event_id")
        if isinstance(value, str):
            yield value
        for item in document.values():
            yield from event_ids(item)
    elif isinstance(document, list):
        for item in document:
            yield from event_ids(item)


def audited_ids(play: Play, change_id: str) -> set[str]:
    done = sdlcflow_cli(play, ["audit", "change", change_id, "--json"])
    if done.returncode != 0:
        raise StepFailed(
            "audit", f"`sdlcflow audit change {change_id} --json` failed: {done.stderr.strip()}"
        )
    try:
        return set(event_ids(json.loads(done.stdout)))
    except ValueError:
        return set(
            event_ids([json.loads(line) for line in done.stdout.splitlines() if line.strip()])
        )


def wait_until_audited(play: Play, change_id: str) -> int:
    """Poll the audit store until every decision of the change logged so far is in it."""
    logged = {e.event_id for e in play.watch.events(lambda e: e.envelope.change_id == change_id)}
    deadline = time.monotonic() + play.options.wait_s
    missing = logged
    with play.narrator.waiting(f"the audit store to hold the {len(logged)} events of {change_id}"):
        while time.monotonic() < deadline:
            play.stage.services.check()
            missing = logged - audited_ids(play, change_id)
            if not missing:
                return len(logged)
            time.sleep(POLL_S)  # polling Cassandra between reads; the wait is bounded above
    sink_log = play.stage.audit_sink.log if play.stage.audit_sink else "the audit sink's log"
    raise StepFailed(
        "audit",
        f"{len(missing)} of {len(logged)} events of change {change_id} read on {COORDINATOR} "
        f"never reached Cassandra (e.g. {sorted(missing)[:3]}); read {sink_log}",
    )


def show_audit_trail(play: Play) -> None:
    stage = play.stage
    if "audit" in stage.missing or stage.audit_sink is None:
        raise MissingPiece(
            f"the audit trail cannot be shown: {stage.missing.get('audit', 'no audit sink')}"
        )
    total = 0
    for role, change_id in play.run.changes.items():
        count = wait_until_audited(play, change_id)
        total += count
        play.evidence(f"{role} in Cassandra", f"all {count} events of change {change_id}")
    play.run.audit_rows = total
    bump, rename = play.run.changes["bump"], play.run.changes["rename"]
    commands = (
        ["audit", "trace", _trace_of(play, bump)],
        ["audit", "change", rename],
        ["report", "--since", play.run.started_at],
    )
    for args in commands:
        done = sdlcflow_cli(play, args)
        play.narrator.say(f"$ sdlcflow {' '.join(args)}")
        if done.returncode != 0:
            raise StepFailed("audit", f"`sdlcflow {' '.join(args)}` failed: {done.stderr.strip()}")
        for line in done.stdout.splitlines():
            play.narrator.say(line)


def _trace_of(play: Play, change_id: str) -> str:
    found = play.watch.events(
        lambda e: e.envelope.change_id == change_id and e.type == "ChangePlanned"
    )
    if not found:
        raise StepFailed("audit", f"no ChangePlanned of {change_id} was seen; no trace to show")
    return found[0].envelope.trace_id
