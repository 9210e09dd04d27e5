"""Replay verification: a table value read before the log agrees when a prefix of it rebuilds it."""

from __future__ import annotations

from dataclasses import replace

import orjson
from processors_harness import make_harness

from sdlcflow.core.decider import handle
from sdlcflow.core.events import ChangeCancelled, Envelope, Event
from sdlcflow.core.fold import evolve
from sdlcflow.core.state import RepoState
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.replay import (
    NO_TABLE_VALUE,
    Difference,
    ReplayReport,
    _is_prefix_fold,
    plain_states,
)
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.storage import closed_key
from sdlcflow.processors.testing import change_request
from sdlcflow.streams.topics import CHANGE_REQUESTS, COORDINATOR

REPO = "acme/shop"
T0 = 1_700_000_000_000


def _decisions() -> list[Event]:
    _state, decisions = handle(
        RepoState(), change_request(REPO, at=T0), core_config(ProcessorConfig.from_env())
    )
    return list(decisions)


def _fold(decisions: list[Event]) -> RepoState:
    state = RepoState()
    for event in decisions:
        state = evolve(state, event)
    return state


class TestPrefixFold:
    """A running coordinator's table may trail the log it is compared with, never disagree."""

    def test_a_value_built_from_the_first_decisions_is_a_prefix_fold(self) -> None:
        decisions = _decisions()
        assert len(decisions) > 2
        stored = _fold(decisions[:2]).to_plain()
        assert _is_prefix_fold(stored, decisions)

    def test_a_value_no_prefix_rebuilds_is_not(self) -> None:
        decisions = _decisions()
        forged = replace(_fold(decisions[:2]), watermark=T0 + 99).to_plain()
        assert not _is_prefix_fold(forged, decisions)


class TestTableStates:
    """The state table's changelog read back — main values, closed keys, format 1 values —
    gives the states the decisions log folds to."""

    def test_a_repository_with_a_closed_change_agrees_with_the_fold_of_its_decisions(
        self,
    ) -> None:
        h = make_harness()
        request = change_request(REPO, at=T0)
        cancelled = {"event_id": "cancel-1", "type": "ChangeCancelled"}
        cancel = Event(
            Envelope(**{**request.envelope.__dict__, **cancelled}), ChangeCancelled("withdrawn")
        )
        decisions: list[Event] = []
        changelog: list[tuple[bytes | None, bytes | None]] = []
        key = REPO.encode()
        for event in (request, cancel):
            result = h.run([h.record(CHANGE_REQUESTS, event)])
            decisions += h.decoded(result.outbound, COORDINATOR)
            if REPO in h.closed:
                changelog.append((closed_key(key), h.closed[REPO]))
            changelog.append((key, h.states[REPO]))
        assert _fold(decisions).closed
        other = _fold(_decisions())
        old_format = {"v": 1, "state": other.to_plain(), "outbox": []}
        changelog.append((b"acme/old", orjson.dumps(old_format)))
        stored = plain_states(changelog, ())
        assert stored[REPO] == _fold(decisions).to_plain()
        assert stored["acme/old"] == other.to_plain()


class TestReportLines:
    """What `sdlcflow replay` prints names each difference and, for repositories the table
    lacks, what to do about them."""

    CHANGELOG = "sdlcflow-processors-repo-state-changelog"

    def test_repositories_missing_from_the_table_come_with_the_app_id_hint(self) -> None:
        report = ReplayReport(decisions=208, repos=3)
        report.differences = [Difference(f"demo/login-{n}", NO_TABLE_VALUE) for n in range(3)]
        lines = report.lines(self.CHANGELOG, verify=True)
        assert lines[0] == "208 decisions (0 duplicates, 0 undecodable) over 3 repositories"
        assert lines[1] == f"DIFF demo/login-0: {NO_TABLE_VALUE}"
        assert lines[-1].startswith(
            f"3 repositories have decisions but no value in {self.CHANGELOG}"
        )
        assert "--app-id" in lines[-1] and "--repos" in lines[-1]

    def test_a_differing_state_names_its_fields_without_the_hint(self) -> None:
        report = ReplayReport(decisions=5, repos=1)
        report.differences = [Difference(REPO, "state differs", ("changes", "watermark"))]
        lines = report.lines(self.CHANGELOG, verify=True)
        assert lines[1:] == [f"DIFF {REPO}: state differs: changes, watermark"]

    def test_agreement_is_said_only_when_verifying(self) -> None:
        report = ReplayReport(decisions=5, repos=1, behind=1)
        verified = report.lines(self.CHANGELOG, verify=True)
        assert verified[-1] == f"no difference between the log and {self.CHANGELOG}"
        assert "fold of a prefix of the log" in verified[-2]
        assert not any("no difference" in line for line in report.lines(self.CHANGELOG, False))
