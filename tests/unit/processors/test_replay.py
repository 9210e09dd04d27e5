"""Replay verification: a table value read before the log agrees when a prefix of it rebuilds it."""

from __future__ import annotations

from dataclasses import replace

from sdlcflow.core.decider import handle
from sdlcflow.core.events import Event
from sdlcflow.core.state import RepoState, evolve
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.replay import _is_prefix_fold
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.testing import change_request

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
