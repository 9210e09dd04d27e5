"""Ids and jitter are derived, never random; the hot-path shortcuts equal the slow paths."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from core_world import CLOCK, World

from sdlcflow.core import events as ev
from sdlcflow.core import state as core_state
from sdlcflow.core.decider import NAMESPACE, derive_id, handle
from sdlcflow.core.records import fast_init, replace
from sdlcflow.core.state import RepoState


class TestDerivedIds:
    """Decision ids are uuid5 of the cause and an index, so replay gives the same ids."""

    def test_derive_id_is_uuid5_of_cause_and_index(self) -> None:
        for cause in ("in-1", "8c1f0a1e-3f7b-4c59-9d7a-1b2c3d4e5f60", "x" * 200):
            for index in (0, 1, 17, "lease", "jitter"):
                expected = str(uuid.uuid5(NAMESPACE, f"{cause}/{index}"))
                assert derive_id(cause, index) == expected

    def test_same_input_gives_same_decision_ids(self) -> None:
        first, second = World(), World()
        first.request("c1")
        second.request("c1")
        assert [e.event_id for e in first.log] == [e.event_id for e in second.log]
        assert all(e.envelope.causation_id == first.inputs[0].event_id for e in first.log)


def _core_records() -> list[type]:
    """Every dataclass the core defines for events and state."""
    found = []
    for module in (ev, core_state):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and dataclasses.is_dataclass(value)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


class TestFastConstruction:
    """The hot-path constructors build exactly what the dataclass constructors build."""

    def test_every_core_record_has_the_fast_constructor(self) -> None:
        records = _core_records()
        assert ev.Envelope in records and core_state.TaskState in records
        slow = [cls.__name__ for cls in records if "sdlcflow.core.records" not in _doc(cls)]
        assert slow == []

    def test_fast_constructor_fills_fields_in_order_with_their_defaults(self) -> None:
        for cls in _core_records():
            fields = dataclasses.fields(cls)
            required = [f for f in fields if f.default is dataclasses.MISSING and not _factory(f)]
            given = {f.name: object() for f in required}
            positional = cls(*given.values())
            assert list(positional.__dict__) == [f.name for f in fields], cls.__name__
            for item in fields:
                value = positional.__dict__[item.name]
                if item.name in given:
                    assert value is given[item.name]
                elif _factory(item):
                    assert value == item.default_factory()  # type: ignore[operator]
                else:
                    assert value == item.default
            assert cls(**given) == positional

    def test_factory_defaults_are_not_shared(self) -> None:
        first, second = RepoState(), RepoState()
        assert first.changes == second.changes and first.changes is not second.changes

    def test_fast_constructor_refuses_what_it_cannot_build(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class Checked:
            value: int

            def __post_init__(self) -> None:
                assert self.value >= 0

        with pytest.raises(TypeError, match="__post_init__"):
            fast_init(Checked)

    def test_emitted_envelopes_equal_the_constructor_and_derived_ids(self) -> None:
        world = World()
        out = world.request("c1")
        cause = world.inputs[0].envelope
        for index, event in enumerate(out):
            expected = ev.Envelope(
                event_id=derive_id(cause.event_id, index),
                type=type(event.payload).__name__,
                occurred_at=cause.occurred_at,
                repo=cause.repo,
                change_id=event.envelope.change_id,
                task_id=event.envelope.task_id,
                trace_id=cause.trace_id,
                causation_id=cause.event_id,
                actor=ev.Actor(ev.ActorKind.COORDINATOR, "coordinator"),
            )
            assert event.envelope == expected
            assert event.scope is None
            # built from field dicts: every field, in field order, as the constructors do
            assert list(vars(event.envelope)) == list(vars(expected))
            assert vars(event) == vars(ev.Event(event.envelope, event.payload, None))
            assert list(vars(event)) == ["envelope", "payload", "scope"]

    def test_replace_matches_dataclasses_replace(self) -> None:
        state = RepoState(repo="r", watermark=5)
        assert replace(state, watermark=9) == dataclasses.replace(state, watermark=9)
        assert state.watermark == 5

    def test_replace_refuses_a_name_that_is_not_a_field_as_dataclasses_does(self) -> None:
        state = RepoState(repo="r")
        with pytest.raises(TypeError, match="no field watermarks"):
            replace(state, watermarks=9)


class TestTimeComesFromEvents:
    """The core reads no clock: the same log at any wall time gives the same decisions."""

    def test_decisions_carry_the_cause_time(self) -> None:
        world = World()
        world.request("c1")
        assert {e.occurred_at for e in world.log} == {world.inputs[0].occurred_at}

    def test_handling_twice_from_the_same_state_is_identical(self) -> None:
        world = World()
        world.request("c1")
        world.lease("c1", "lint")
        world.now += 60_000
        event = world.event(ev.Tick(), CLOCK)
        assert "LeaseExpired" in [e.type for e in handle(world.state, event, world.config)[1]]
        assert handle(world.state, event, world.config) == handle(world.state, event, world.config)


def _doc(cls: type) -> str:
    return cls.__init__.__doc__ or ""  # type: ignore[misc]


def _factory(item: dataclasses.Field[object]) -> bool:
    return item.default_factory is not dataclasses.MISSING
