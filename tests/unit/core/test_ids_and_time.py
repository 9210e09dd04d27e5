"""Ids and jitter are derived, never random; the hot-path shortcuts equal the slow paths."""

from __future__ import annotations

import dataclasses
import uuid

from core_world import CLOCK, World

from sdlcflow.core import events as ev
from sdlcflow.core.decider import NAMESPACE, _frozen, derive_id, handle
from sdlcflow.core.state import RepoState, replace


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


class TestFastConstruction:
    """The hot-path constructors build exactly what the dataclass constructors build."""

    def test_fast_construction_matches_the_constructor(self) -> None:
        fields = {
            "event_id": "e",
            "type": "Tick",
            "occurred_at": 1,
            "repo": "r",
            "change_id": None,
            "task_id": None,
            "trace_id": "t",
            "causation_id": None,
            "actor": ev.Actor(ev.ActorKind.OPS, "o"),
            "schema_version": 1,
            "signature": None,
            "credential": None,
        }
        assert {f.name for f in dataclasses.fields(ev.Envelope)} == set(fields)
        assert _frozen(ev.Envelope, **fields) == ev.Envelope(**fields)
        event_fields = {f.name for f in dataclasses.fields(ev.Event)}
        assert event_fields == {"envelope", "payload", "scope"}

    def test_replace_matches_dataclasses_replace(self) -> None:
        state = RepoState(repo="r", watermark=5)
        assert replace(state, watermark=9) == dataclasses.replace(state, watermark=9)
        assert state.watermark == 5


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
