"""The CI form of the chaos suite: the short profile on a private Kafka + Cassandra pair.

The run starts its own servers on free ports in the test's tmp dir (it stops and restarts
them, so it never touches the shared ones), runs the coordinator, the audit sink and SDK
agents as child processes, injects every kind of fault on a seeded schedule, and checks the
invariants from the outside. The seed is printed; `sdlcflow chaos run --short --seed N`
repeats the same schedule.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sdlcflow.chaos.faults import SHORT, FaultKind
from sdlcflow.chaos.runner import run_chaos

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


class TestChaosShort:
    """Under kills, pauses, outages, revocations and replays no invariant breaks."""

    @pytest.mark.timeout(900)
    def test_every_change_closes_and_no_invariant_is_violated_under_faults(
        self, tmp_path: Path
    ) -> None:
        seed = int(os.environ.get("SDLCFLOW_CHAOS_SEED") or time.time())
        print(f"chaos short, seed {seed}")
        report = run_chaos(SHORT, seed, tmp_path, print)
        figures = report.to_json()
        print(figures)
        assert report.violations == [], figures["violation_details"]
        assert report.changes == SHORT.changes
        assert sum(report.outcomes.values()) == SHORT.changes, report.outcomes
        assert figures["faults_by_kind"] == {kind.value: n for kind, n in sorted(SHORT.faults)}
        assert set(figures["faults_by_kind"]) == {kind.value for kind in FaultKind}
        assert report.audit_rows >= report.events_on_topics > 0
        assert report.replay["decisions"] > 0
