"""Plain-data round trips for state and events, and the event/applier/handler registries."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from enum import Enum

import pytest
from core_world import World

from sdlcflow.core import events as ev
from sdlcflow.core.codec import (
    CodecError,
    event_from_plain,
    event_to_plain,
    from_plain,
    to_plain,
)
from sdlcflow.core.decider import HANDLERS
from sdlcflow.core.fold import APPLIERS
from sdlcflow.core.state import RepoState


def _busy_world() -> World:
    world = World()
    world.request("c1")
    world.request("c2", paths=("src/app.py",))
    world.run_step("c1", "lint")
    world.lease("c1", "test")
    world.run_step("c2", "lint")
    world.lease("c2", "test")
    world.fail("c2", "test")
    return world


class TestStateRoundTrip:
    """RepoState survives JSON for the shell's table."""

    def test_repo_state_round_trips_through_json(self) -> None:
        state = _busy_world().state
        text = json.dumps(state.to_plain())
        assert RepoState.from_plain(json.loads(text)) == state

    def test_malformed_state_is_refused_with_the_field(self) -> None:
        plain = _busy_world().state.to_plain()
        plain["watermark"] = "soon"
        with pytest.raises(CodecError, match="expected int"):
            RepoState.from_plain(plain)


class TestEventRoundTrip:
    """Every event of a real run round-trips through plain data."""

    def test_every_decision_and_input_round_trips(self) -> None:
        world = _busy_world()
        for event in [*world.inputs, *world.log]:
            plain = json.loads(json.dumps(event_to_plain(event, with_scope=True)))
            assert event_from_plain(plain) == event

    def test_unknown_type_is_named(self) -> None:
        event = _busy_world().log[0]
        plain = event_to_plain(event)
        plain["envelope"]["type"] = "Teleported"
        with pytest.raises(CodecError, match="unknown event type 'Teleported'"):
            event_from_plain(plain)


_ALLOWED_SCALARS = (str, int, bool, float, type(None))


def _wire_safe(hint: object, seen: set[type]) -> bool:
    if hint in _ALLOWED_SCALARS:
        return True
    if isinstance(hint, type) and issubclass(hint, Enum):
        return True
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint in seen:
            return True
        seen.add(hint)
        hints = typing.get_type_hints(hint)
        return all(_wire_safe(hints[f.name], seen) for f in dataclasses.fields(hint))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and _wire_safe(args[0], seen)
    if origin in (typing.Union, types.UnionType):
        return all(_wire_safe(arg, seen) for arg in args)
    if origin in (dict, Mapping):
        return args[0] is str and _wire_safe(args[1], seen)
    return False


class TestRegistries:
    """Every event type has an applier, every input a handler, every payload maps onto Avro."""

    def test_every_event_type_has_an_applier(self) -> None:
        missing = [name for name, cls in ev.EVENT_TYPES.items() if cls not in APPLIERS]
        assert missing == []

    def test_every_input_type_has_a_handler_and_an_actor_rule(self) -> None:
        assert set(HANDLERS) == set(ev.INPUT_TYPES.values())
        assert set(ev.INPUT_ACTOR_KINDS) == set(ev.INPUT_TYPES)

    def test_inputs_and_decisions_are_disjoint_and_named_after_their_class(self) -> None:
        assert not set(ev.INPUT_TYPES) & set(ev.DECISION_TYPES)
        assert all(cls.__name__ == name for name, cls in ev.EVENT_TYPES.items())

    @pytest.mark.parametrize("name", sorted(ev.EVENT_TYPES))
    def test_payload_uses_only_wire_safe_types(self, name: str) -> None:
        assert _wire_safe(ev.EVENT_TYPES[name], set())

    def test_payloads_are_frozen(self) -> None:
        for cls in ev.EVENT_TYPES.values():
            assert cls.__dataclass_params__.frozen, cls.__name__  # type: ignore[attr-defined]

    def test_contract_round_trips_through_json(self) -> None:
        contract = _busy_world().state.changes["c1"].tasks["c1/lint"].contract
        assert from_plain(ev.TaskContract, json.loads(json.dumps(to_plain(contract)))) == contract
