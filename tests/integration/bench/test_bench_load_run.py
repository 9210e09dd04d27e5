"""A short load-generator run against the real coordinator: every change reaches its outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdlcflow.bench.load import LoadGenerator, LoadSpec
from sdlcflow.bench.mix import MixSpec, Outcome, expected_outcome
from sdlcflow.bench.processes import ProcessSet
from sdlcflow.bench.sdlcflow_system import SdlcflowSystem

pytestmark = pytest.mark.integration

OUTCOME_TYPES = {Outcome.PROMOTED: "ChangePromoted", Outcome.FAILED: "ChangeFailed"}


class TestLoadRunOnTheCoordinator:
    """Processors, SDK bench agents and the auto-approver carry the mix to its outcomes."""

    def test_every_submitted_change_reaches_the_outcome_the_mix_predicts(
        self, kafka_bootstrap: str, tmp_path: Path
    ) -> None:
        # high rates so a short run still holds retries, a dead letter and reviews
        mix = MixSpec(retry_rate=0.2, dead_rate=0.1, review_rate=0.3)
        procs = ProcessSet(tmp_path)
        system = SdlcflowSystem(kafka_bootstrap, tmp_path, procs, mix=mix, audit=False)
        spec = LoadSpec(
            rate=4.0, warmup_s=1.0, measure_s=5.0, repos=10, mix=mix, drain_timeout_s=150.0
        )
        try:
            system.start()
            figures = LoadGenerator(system, spec, system.prefix, procs).run()
        finally:
            system.close()
            procs.close()
        record = system.record
        assert record.submitted and not record.unfinished()
        for change, (kind, _) in record.terminal.items():
            assert kind == OUTCOME_TYPES[expected_outcome(mix, change)], change
        assert figures["measured_changes"] == figures["finished"] == 20
        assert figures["lease_grants"] >= figures["tasks_completed"] > 0
        assert figures["retries"] > 0 and figures["approvals"] > 0
