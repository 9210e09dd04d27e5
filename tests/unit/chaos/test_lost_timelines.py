"""A chaos run that leaves changes open writes each open change's decisions to a file."""

from __future__ import annotations

from pathlib import Path

from test_chaos_invariants import decision, granted, planned

from sdlcflow.agents import task_contract
from sdlcflow.chaos.faults import SHORT
from sdlcflow.chaos.invariants import Violation
from sdlcflow.chaos.runner import LOST_TIMELINES, ChaosReport, _write_lost_timelines
from sdlcflow.core import events as ev


class TestLostTimelines:
    """Only open changes are written, their decisions in log order, nothing when none is open."""

    def test_an_open_change_is_written_with_its_decisions_in_order(self, tmp_path: Path) -> None:
        offer = ev.TaskOffered(task_contract("lint", change_id="change-1"), 1, 1,
                               ev.OfferReason.READY)  # fmt: skip
        other = decision(ev.ChangePromoted(planned().payload.state, ()), change="change-2")  # type: ignore[union-attr]
        decisions = [planned("lint"), decision(offer, task="lint"), other,
                     granted("lint", "lease-1", 1)]  # fmt: skip
        report = ChaosReport(SHORT, 1, "run")
        report.violations = [Violation("change-lost", "change-1", "no terminal outcome")]
        path = tmp_path / LOST_TIMELINES
        _write_lost_timelines(path, report, decisions, lambda _line: None)
        lines = path.read_text().splitlines()
        assert lines[0] == "change change-1"
        assert [line.split()[1] for line in lines[1:]] == [
            "ChangePlanned", "TaskOffered", "LeaseGranted",
        ]  # fmt: skip
        assert "epoch=1 holder=agent-a" in lines[3]

    def test_nothing_is_written_when_every_change_closed(self, tmp_path: Path) -> None:
        path = tmp_path / LOST_TIMELINES
        _write_lost_timelines(path, ChaosReport(SHORT, 1, "run"), [planned()], print)
        assert not path.exists()
