"""records.build makes the same frozen record as its constructor, in C in the compiled core."""

from __future__ import annotations

import copy
import gc
import pickle
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

import sdlcflow.core
from sdlcflow.core import records
from sdlcflow.core.events import Actor, ActorKind, Envelope

ENVELOPE = Envelope(
    event_id="in-1",
    type="Tick",
    occurred_at=1_700_000_000_000,
    repo="acme/shop",
    change_id="change-1",
    task_id=None,
    trace_id="trace-1",
    causation_id=None,
    actor=Actor(ActorKind.COORDINATOR, "timer"),
)


def _builders() -> list[Any]:
    """records.build, and the C constructor itself where the compiled core has one."""
    in_c = records._build_in_c
    return [records.build] if in_c is None else [records.build, in_c]


@pytest.mark.parametrize("build", _builders())
def test_a_built_record_is_the_constructed_one_frozen_and_collectable(build: Any) -> None:
    fields = dict(ENVELOPE.__dict__)
    built = build(Envelope, fields)
    assert type(built) is Envelope
    assert built == ENVELOPE and hash(built) == hash(ENVELOPE) and repr(built) == repr(ENVELOPE)
    assert built.__dict__ is fields  # handed over, not copied: the callers build it fresh
    assert pickle.loads(pickle.dumps(built)) == ENVELOPE
    assert copy.deepcopy(built) == ENVELOPE
    assert gc.is_tracked(built)
    with pytest.raises(FrozenInstanceError):
        built.repo = "other/repo"  # type: ignore[misc]


def test_updated_copies_a_record_with_the_changes_and_leaves_it_alone() -> None:
    moved = records.updated(ENVELOPE, {"repo": "acme/other"})
    assert moved.repo == "acme/other" and ENVELOPE.repo == "acme/shop"
    assert moved == records.replace(ENVELOPE, repo="acme/other")


def test_the_compiled_core_builds_records_in_c() -> None:
    assert (records._build_in_c is not None) is sdlcflow.core.COMPILED


@pytest.mark.skipif(not sdlcflow.core.COMPILED, reason="the C constructor is the compiled core's")
def test_the_c_constructor_refuses_what_is_not_a_plain_record_and_says_why() -> None:
    build: Any = records._build_in_c
    assert build is not None
    with pytest.raises(TypeError, match="needs a class whose instances have a __dict__"):
        build(int, {})
    with pytest.raises(TypeError, match="takes a class and a dict of its fields, not type"):
        build(Envelope, [("repo", "acme/shop")])
    with pytest.raises(TypeError, match=r"\(1 arguments given\)"):
        build(Envelope)
