"""Hypothesis strategies for every sdlcflow event, shipped so other parts' tests can use them.

Values are drawn from the dataclass type hints, with integer widths taken from the Avro schema
(an Avro `int` field never gets a value that only fits a `long`). Needs `hypothesis` (a dev
dependency); import this module from tests only.
"""

from __future__ import annotations

import dataclasses
import enum
import string
import typing
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.streams.records import field_hints, optional_inner
from sdlcflow.streams.schema_store import (
    SchemaStore,
    current_store,
    named_types,
    resolve_type,
)
from sdlcflow.streams.wire import event_types, record_name

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_HEX = "0123456789abcdef"

Schema = Any


def trace_ids() -> st.SearchStrategy[str]:
    """Valid W3C trace ids."""
    return st.text(_HEX, min_size=32, max_size=32).filter(lambda v: v != "0" * 32)


def envelopes(event_type: str) -> st.SearchStrategy[Envelope]:
    """Envelopes of one event type with valid ids, trace and repo."""
    return st.builds(
        Envelope,
        event_id=st.uuids().map(str),
        type=st.just(event_type),
        occurred_at=st.integers(0, 2**53),
        repo=st.text(string.ascii_lowercase + "-/", min_size=1, max_size=30),
        change_id=st.none() | st.uuids().map(str),
        task_id=st.none() | st.text(max_size=20),
        trace_id=trace_ids(),
        causation_id=st.none() | st.uuids().map(str),
        actor=st.builds(Actor, kind=st.sampled_from(ActorKind), id=st.text(max_size=20)),
        schema_version=st.integers(1, 5),
        signature=st.none() | st.text(max_size=40),
        credential=st.none() | st.text(max_size=40),
    )


def payloads(event_type: str, store: SchemaStore | None = None) -> st.SearchStrategy[Any]:
    """Payloads of one event type, every field drawn to fit both dataclass and schema."""
    schema = (store or current_store()).get(record_name(event_type)).schema
    names = named_types(schema)
    record = resolve_type(_field(schema, "payload")["type"], names, None)
    return _record(event_types()[event_type], record, names)


def events(event_type: str | None = None) -> st.SearchStrategy[Event]:
    """Whole events (envelope + payload) of one type, or of any type when none is given."""
    if event_type is None:
        return st.sampled_from(sorted(event_types())).flatmap(events)
    return st.builds(Event, envelopes(event_type), payloads(event_type))


def _field(record: Mapping[str, Schema], name: str) -> dict[str, Schema]:
    return next(f for f in record["fields"] if f["name"] == name)


def _record(cls: type, record: dict[str, Schema], names: dict[str, Any]) -> st.SearchStrategy[Any]:
    space = record.get("namespace")
    fields = {
        name: _value(hint, resolve_type(_field(record, name)["type"], names, space), names, space)
        for name, hint in field_hints(cls).items()
    }
    return st.builds(cls, **fields)


def _value(
    hint: Any, avro: Schema, names: dict[str, Any], space: str | None
) -> st.SearchStrategy[Any]:
    inner = optional_inner(hint)
    if inner is not None:
        branch = next(b for b in avro if b != "null")
        return st.none() | _value(inner, resolve_type(branch, names, space), names, space)
    if typing.get_origin(hint) is tuple:
        items = resolve_type(avro["items"], names, space)
        item = _value(typing.get_args(hint)[0], items, names, space)
        return st.lists(item, max_size=3).map(tuple)
    if typing.get_origin(hint) in (dict, Mapping):
        values = resolve_type(avro["values"], names, space)
        value = _value(typing.get_args(hint)[1], values, names, space)
        return st.dictionaries(st.text(max_size=20), value, max_size=3)
    if hint is bool:
        return st.booleans()
    if hint is int:
        low, high = INT32 if _primitive(avro) == "int" else INT64
        return st.integers(low, high)
    if hint is float:
        return st.floats(allow_nan=False, width=32 if _primitive(avro) == "float" else 64)
    if hint is str:
        return st.text(max_size=40)
    if hint is bytes:
        return st.binary(max_size=64)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _record(hint, avro, names)
    raise TypeError(f"no strategy for {hint!r}")


def _primitive(avro: Schema) -> str:
    return str(avro["type"]) if isinstance(avro, dict) else str(avro)


def sample_payload(cls: type) -> Any:
    """A small, deterministic payload of `cls` with every field set (tuples hold one item)."""
    return cls(**{name: _sample(hint, name) for name, hint in field_hints(cls).items()})


def sample_event(event_type: str, *, repo: str = "acme/web", trace_id: str | None = None) -> Event:
    """A deterministic, valid event of one type (for integration tests and examples)."""
    import uuid

    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        type=event_type,
        occurred_at=1_700_000_000_000,
        repo=repo,
        change_id=str(uuid.uuid4()),
        task_id="lint",
        trace_id=trace_id or uuid.uuid4().hex,
        causation_id=None,
        actor=Actor(ActorKind.COORDINATOR, "coordinator"),
    )
    return Event(envelope, sample_payload(event_types()[event_type]))


def _sample(hint: Any, name: str) -> Any:
    inner = optional_inner(hint)
    if inner is not None:
        return _sample(inner, name)
    if typing.get_origin(hint) is tuple:
        return (_sample(typing.get_args(hint)[0], name),)
    if typing.get_origin(hint) in (dict, Mapping):
        return {f"{name}-key": _sample(typing.get_args(hint)[1], name)}
    if hint is bool:
        return True
    if hint is int:
        return 3
    if hint is float:
        return 0.25
    if hint is str:
        return f"{name}-value"
    if hint is bytes:
        return name.encode()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(iter(hint))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return sample_payload(hint)
    raise TypeError(f"no sample for {hint!r}")
