"""Full (backward and forward) compatibility between two versions of a contract.

Backward: consumers on the new schema read data written with the old one (a replay of the log).
Forward: consumers still on the old schema read data written with the new one (a rolling
upgrade). Two checks together decide it:

1. Round trips through fastavro's schema resolution, both ways, over generated records (catches
   added/removed fields without defaults, changed types, renamed records).
2. A walk over both schemas for the value-dependent rules generated data may miss: enum symbols
   and union branches that one side can write and the other cannot read.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from sdlcflow.streams.schema_store import PRIMITIVES, ContractSchema, named_types, resolve_type

SAMPLES = 40
# Avro's promotions: a writer of the key may be read as any of the values.
_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def incompatibilities(old: ContractSchema, new: ContractSchema) -> list[str]:
    """Every reason `new` is not backward and forward compatible with `old` (empty: compatible)."""
    problems = _round_trips(old, new, "backward (new reads old)")
    problems += _round_trips(new, old, "forward (old reads new)")
    walker = _Walk(named_types(old.schema), named_types(new.schema))
    walker.compare(old.schema, new.schema, old.full_name)
    return problems + walker.problems


def _round_trips(writer: ContractSchema, reader: ContractSchema, label: str) -> list[str]:
    state = random.getstate()
    random.seed(writer.fingerprint)  # the same records on every run
    try:
        records = list(generate_many(writer.wire, SAMPLES))
    finally:
        random.setstate(state)
    for record in records:
        buffer = io.BytesIO()
        schemaless_writer(buffer, writer.wire, record)
        buffer.seek(0)
        try:
            schemaless_reader(buffer, writer.wire, reader.wire)
        except Exception as exc:  # any resolution failure is the finding
            return [f"{writer.full_name}: {label} fails: {type(exc).__name__}: {exc}"]
    return []


class _Walk:
    """Compares enum symbols and union branches of two versions, field by field."""

    def __init__(self, old_names: Mapping[str, Any], new_names: Mapping[str, Any]) -> None:
        self.old_names = old_names
        self.new_names = new_names
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def compare(self, old: Any, new: Any, where: str) -> None:
        old = resolve_type(old, self.old_names, None)
        new = resolve_type(new, self.new_names, None)
        if isinstance(old, list) or isinstance(new, list):
            self._unions(_branches(old), _branches(new), where)
            return
        kind_old, kind_new = _kind(old), _kind(new)
        if kind_old != kind_new:
            return  # a change of kind is reported by the round trips
        if kind_old == "enum":
            self._enum(old, new, where)
        elif kind_old == "record":
            self._record(old, new, where)
        elif kind_old == "array":
            self.compare(old["items"], new["items"], f"{where}[]")
        elif kind_old == "map":
            self.compare(old["values"], new["values"], f"{where}{{}}")

    def _record(self, old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> None:
        key = (str(old["name"]), where)
        if key in self._seen:
            return
        self._seen.add(key)
        new_fields = {f["name"]: f for f in new["fields"]}
        for field in old["fields"]:
            if field["name"] in new_fields:
                self.compare(
                    field["type"], new_fields[field["name"]]["type"], f"{where}.{field['name']}"
                )

    def _enum(self, old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> None:
        added = [s for s in new["symbols"] if s not in old["symbols"]]
        removed = [s for s in old["symbols"] if s not in new["symbols"]]
        if added and "default" not in old:
            self.problems.append(
                f"{where}: enum symbols {added} added; readers on the old schema cannot read them "
                "(give the enum a default in a release before adding symbols)"
            )
        if removed and "default" not in new:
            self.problems.append(
                f"{where}: enum symbols {removed} removed; the log still holds them "
                "(keep them, or give the enum a default)"
            )

    def _unions(self, old: list[Any], new: list[Any], where: str) -> None:
        old_kinds = {_branch_key(b, self.old_names) for b in old}
        new_kinds = {_branch_key(b, self.new_names) for b in new}
        if new_kinds - _readable(old_kinds):
            self.problems.append(
                f"{where}: union branches {sorted(new_kinds - old_kinds)} added; old readers "
                "cannot read values written in them"
            )
        if old_kinds - _readable(new_kinds):
            self.problems.append(
                f"{where}: union branches {sorted(old_kinds - new_kinds)} removed; data in the "
                "log uses them"
            )
        for branch in old:
            match = [
                b
                for b in new
                if _branch_key(b, self.new_names) == _branch_key(branch, self.old_names)
            ]
            if match:
                self.compare(branch, match[0], where)


def _branches(node: Any) -> list[Any]:
    return node if isinstance(node, list) else [node]


def _kind(node: Any) -> str:
    if isinstance(node, str):
        return node
    return str(node.get("type"))


def _branch_key(node: Any, names: Mapping[str, Any]) -> str:
    resolved = resolve_type(node, names, None)
    kind = _kind(resolved)
    if kind in PRIMITIVES or kind in ("array", "map"):
        return kind
    return str(resolved.get("name"))


def _readable(kinds: set[str]) -> set[str]:
    """Branch kinds a reader with `kinds` accepts, allowing Avro's promotions."""
    out = set(kinds)
    for writer, readers in _PROMOTIONS.items():
        if readers & kinds:
            out.add(writer)
    return out
