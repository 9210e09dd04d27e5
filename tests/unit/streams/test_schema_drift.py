"""The .avsc files are the single source of truth; the core's dataclasses must match them."""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Mapping
from typing import Any

from sdlcflow.core.events import EVENT_TYPES, Envelope
from sdlcflow.streams.records import field_hints, optional_inner
from sdlcflow.streams.schema_store import (
    EVENTS_NAMESPACE,
    PAYLOADS_NAMESPACE,
    current_store,
    named_types,
    resolve_type,
)
from sdlcflow.streams.wire import event_types, record_name

FIX = (
    "The .avsc files under schemas/ are the wire contract and the single source of truth: "
    "update schemas/{file} to match (keep it backward and forward compatible, see "
    "schemas/README.md), or change the dataclass back."
)
_SCALAR_TYPES = {
    str: {"string"},
    int: {"int", "long"},
    float: {"float", "double"},
    bool: {"boolean"},
    bytes: {"bytes"},
}


def _primitive(avro: Any) -> str | None:
    if isinstance(avro, str):
        return avro
    if isinstance(avro, dict) and isinstance(avro.get("type"), str):
        return str(avro["type"])
    return None


def _avro_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_avro_default(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


class _Comparison:
    """Walks a dataclass and an Avro record side by side, collecting every disagreement."""

    def __init__(self, names: dict[str, Any]) -> None:
        self.names = names
        self.problems: list[str] = []

    def record(self, cls: type, record: dict[str, Any], path: str) -> None:
        if record.get("type") != "record" or record["name"] != cls.__name__:
            self.problems.append(f"{path}: {cls.__name__} maps to record {record.get('name')!r}")
            return
        hints = field_hints(cls)
        avro_fields = {f["name"]: f for f in record["fields"]}
        for missing in hints.keys() - avro_fields.keys():
            self.problems.append(f"{path}.{missing}: in the dataclass, not in the schema")
        for extra in avro_fields.keys() - hints.keys():
            self.problems.append(f"{path}.{extra}: in the schema, not in the dataclass")
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        for name in hints.keys() & avro_fields.keys():
            field = avro_fields[name]
            where = f"{path}.{name}"
            if "doc" not in field:
                self.problems.append(f"{where}: the schema field has no doc")
            self.default(defaults[name], field, where)
            self.type(hints[name], field["type"], where, record.get("namespace"))

    def default(self, field: dataclasses.Field[Any], avro: dict[str, Any], where: str) -> None:
        if field.default is dataclasses.MISSING:
            return
        if "default" not in avro:
            self.problems.append(f"{where}: dataclass default {field.default!r}, schema has none")
        elif avro["default"] != _avro_default(field.default):
            self.problems.append(
                f"{where}: dataclass default {field.default!r}, schema default {avro['default']!r}"
            )

    def type(self, hint: Any, avro: Any, where: str, space: str | None) -> None:
        avro = resolve_type(avro, self.names, space)
        inner = optional_inner(hint)
        if inner is not None:
            branches = avro if isinstance(avro, list) else []
            rest = [b for b in branches if b != "null"]
            if "null" not in branches or len(rest) != 1:
                self.problems.append(f"{where}: optional in the dataclass, schema is {avro!r}")
                return
            self.type(inner, rest[0], where, space)
            return
        if isinstance(avro, list):
            self.problems.append(
                f"{where}: a union {avro!r} in the schema, {hint!r} in the dataclass"
            )
        elif typing.get_origin(hint) is tuple:
            if _primitive(avro) != "array":
                self.problems.append(f"{where}: a tuple in the dataclass, {avro!r} in the schema")
            else:
                self.type(typing.get_args(hint)[0], avro["items"], f"{where}[]", space)
        elif typing.get_origin(hint) in (dict, Mapping):
            key, value = typing.get_args(hint)
            if _primitive(avro) != "map" or key is not str:
                self.problems.append(f"{where}: a mapping in the dataclass, {avro!r} in the schema")
            else:
                self.type(value, avro["values"], f"{where}{{}}", space)
        elif hint in _SCALAR_TYPES:
            if _primitive(avro) not in _SCALAR_TYPES[hint]:
                self.problems.append(
                    f"{where}: {hint.__name__} in the dataclass, {avro!r} in the schema"
                )
        elif isinstance(hint, type) and issubclass(hint, enum.Enum):
            self.enum(hint, avro, where)
        elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
            self.record(hint, avro, where)
        else:
            self.problems.append(f"{where}: {hint!r} has no Avro mapping")

    def enum(self, hint: type[enum.Enum], avro: Any, where: str) -> None:
        if not isinstance(avro, dict) or avro.get("type") != "enum":
            self.problems.append(
                f"{where}: enum {hint.__name__} in the dataclass, {avro!r} in the schema"
            )
            return
        values = [m.value for m in hint]
        if avro["name"] != hint.__name__:
            self.problems.append(f"{where}: enum {hint.__name__} but schema enum {avro['name']}")
        elif avro["symbols"] != values:
            added = [v for v in values if v not in avro["symbols"]]
            gone = [v for v in avro["symbols"] if v not in values]
            self.problems.append(
                f"{where}: enum {hint.__name__} differs: only in the dataclass {added}, "
                f"only in the schema {gone}, order {'same' if not (added or gone) else 'n/a'}"
            )


def _disagreements(event_type: str, cls: type) -> list[str]:
    schema = current_store().get(record_name(event_type)).schema
    names = named_types(schema)
    comparison = _Comparison(names)
    fields = {f["name"]: f for f in schema["fields"]}
    if set(fields) != {"envelope", "payload"}:
        return [f"{event_type}: an event record has exactly the fields envelope and payload"]
    comparison.record(
        Envelope, resolve_type(fields["envelope"]["type"], names, EVENTS_NAMESPACE), "envelope"
    )
    payload = resolve_type(fields["payload"]["type"], names, EVENTS_NAMESPACE)
    if payload.get("namespace") != PAYLOADS_NAMESPACE:
        comparison.problems.append(f"payload record must be in namespace {PAYLOADS_NAMESPACE}")
    comparison.record(cls, payload, "payload")
    return comparison.problems


class TestSchemaDrift:
    """Every payload dataclass agrees with its .avsc, and every .avsc has a dataclass."""

    def test_every_core_event_type_has_a_schema(self) -> None:
        missing = sorted(t for t in EVENT_TYPES if record_name(t) not in current_store())
        assert not missing, (
            f"core/events.py has event types without a schema: {missing}. "
            f"Add schemas/{EVENTS_NAMESPACE}.<Type>.avsc for each (see schemas/README.md)."
        )

    def test_every_event_schema_has_a_payload_dataclass(self) -> None:
        known = {record_name(t) for t in event_types()}
        orphans = sorted(set(current_store().event_names()) - known)
        assert not orphans, (
            f"schemas without a payload dataclass in core/events.py: {orphans}. "
            "Add the dataclass to EVENT_TYPES, or remove the schema in a compatible release."
        )

    def test_every_payload_dataclass_matches_its_schema(self) -> None:
        report = {
            event_type: problems
            for event_type, cls in sorted(event_types().items())
            if (problems := _disagreements(event_type, cls))
        }
        details = "\n".join(
            f"  {t}: " + "; ".join(p) + "\n    -> " + FIX.format(file=f"{record_name(t)}.avsc")
            for t, p in report.items()
        )
        assert not report, f"schemas/ and the dataclasses disagree:\n{details}"

    def test_the_comparison_notices_a_changed_field(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class LeaseHeartbeat:
            lease_id: str
            epoch: str  # was int

        problems = _disagreements("LeaseHeartbeat", LeaseHeartbeat)
        assert problems == ["payload.epoch: str in the dataclass, 'long' in the schema"]

    def test_the_comparison_notices_an_added_field(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class ChangeCancelled:
            reason: str
            urgent: bool = False

        problems = _disagreements("ChangeCancelled", ChangeCancelled)
        assert problems == ["payload.urgent: in the dataclass, not in the schema"]
