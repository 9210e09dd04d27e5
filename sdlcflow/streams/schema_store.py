"""The Avro contracts under `schemas/`, loaded once and resolved into self-contained schemas.

Each `.avsc` file defines one named type and is called `<namespace>.<name>.avsc`. Files refer to
each other's types by name; loading inlines every reference at its first use, so each top-level
schema becomes one standalone document that a Schema Registry, fastavro or any Avro tool reads
on its own. Records in the `sdlcflow.events` namespace are the message values on our topics
(the registry subjects, RecordNameStrategy); the other files are shared building blocks.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from sdlcflow.errors import SdlcflowError

EVENTS_NAMESPACE = "sdlcflow.events"
PAYLOADS_NAMESPACE = "sdlcflow.payloads"
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
HISTORY_DIR = SCHEMAS_DIR / "history"

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})

Json = Any  # an Avro schema node: a type name, a union list or a schema object


class SchemaError(SdlcflowError):
    """The `.avsc` contracts are inconsistent: a bad file name, an unknown type, a duplicate."""


@dataclass(frozen=True)
class ContractSchema:
    """One top-level schema, resolved and ready for the codec.

    `schema` keeps docs and logical types for people and registries; `wire` is the fastavro-parsed
    schema with logical types removed, so ids stay strings and times stay epoch milliseconds
    exactly as the core holds them, and no per-field conversion runs on the hot path.
    """

    full_name: str
    schema: Mapping[str, Json]
    canonical: str
    fingerprint: str
    wire: dict[str, Json] = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]

    def to_json(self) -> str:
        """The standalone schema text, as registered with a Schema Registry."""
        return json.dumps(self.schema, separators=(",", ":"))

    @classmethod
    def from_schema(cls, schema: Mapping[str, Json]) -> ContractSchema:
        """Build from a standalone schema document (all named types defined inline)."""
        try:
            parsed = parse_schema(copy.deepcopy(dict(schema)))
            canonical = to_parsing_canonical_form(parsed)
            wire = parse_schema(strip_logical_types(copy.deepcopy(dict(schema))))
            assert isinstance(wire, dict)
        except Exception as exc:
            raise SchemaError(f"schema {schema.get('name')!r} is not valid Avro: {exc}") from exc
        return cls(
            full_name=_full_name(schema, None),
            schema=schema,
            canonical=canonical,
            fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
            wire=wire,
        )


def strip_logical_types(node: Json) -> Json:
    """The same schema without `logicalType` annotations; the binary encoding is unchanged."""
    if isinstance(node, list):
        return [strip_logical_types(branch) for branch in node]
    if isinstance(node, dict):
        return {
            key: strip_logical_types(value) for key, value in node.items() if key != "logicalType"
        }
    return node


def _full_name(node: Mapping[str, Json], namespace: str | None) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    space = node.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _namespace_of(full_name: str) -> str | None:
    space, _, _ = full_name.rpartition(".")
    return space or None


class SchemaStore:
    """Every contract of one schema directory (current contracts or one released version)."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Json]], origin: str) -> None:
        self._definitions = dict(definitions)
        self.origin = origin
        self._resolved: dict[str, ContractSchema] = {}

    @classmethod
    def from_directory(cls, directory: Path) -> SchemaStore:
        """Load every `<namespace>.<name>.avsc` of `directory` (not its subdirectories)."""
        definitions: dict[str, Mapping[str, Json]] = {}
        files = sorted(directory.glob("*.avsc"))
        if not files:
            raise SchemaError(f"no .avsc files in {directory}; is the schemas/ directory shipped?")
        for path in files:
            try:
                node = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise SchemaError(f"{path} is not valid JSON: {exc}") from exc
            if not isinstance(node, dict) or node.get("type") not in _NAMED:
                raise SchemaError(f"{path} must define one named type (record, enum or fixed)")
            full = _full_name(node, None)
            if path.name != f"{full}.avsc":
                raise SchemaError(f"{path} defines {full}; rename the file to {full}.avsc")
            definitions[full] = node
        return cls(definitions, str(directory))

    def names(self) -> list[str]:
        """Full names of every named type defined by a file, sorted."""
        return sorted(self._definitions)

    def event_names(self) -> list[str]:
        """Full names of the event records: the values our topics carry."""
        return [n for n in self.names() if _namespace_of(n) == EVENTS_NAMESPACE]

    def __contains__(self, full_name: object) -> bool:
        return full_name in self._definitions

    def __iter__(self) -> Iterator[ContractSchema]:
        return (self.get(name) for name in self.names())

    def get(self, full_name: str) -> ContractSchema:
        """The standalone, resolved schema of one named type defined by a file."""
        if full_name not in self._resolved:
            if full_name not in self._definitions:
                raise SchemaError(
                    f"no schema named {full_name!r} in {self.origin}; "
                    f"known: {', '.join(self.names())}"
                )
            standalone = _Resolver(self._definitions).inline(full_name)
            self._resolved[full_name] = ContractSchema.from_schema(standalone)
        return self._resolved[full_name]


class _Resolver:
    """Inlines named-type references so that each top-level schema stands alone."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Json]]) -> None:
        self._definitions = definitions
        self._defined: set[str] = set()

    def inline(self, full_name: str) -> dict[str, Json]:
        node = self._node(self._definitions[full_name], None)
        assert isinstance(node, dict)
        return node

    def _node(self, node: Json, namespace: str | None) -> Json:
        if isinstance(node, str):
            return self._reference(node, namespace)
        if isinstance(node, list):
            return [self._node(branch, namespace) for branch in node]
        if not isinstance(node, dict):
            raise SchemaError(f"unexpected schema node {node!r}")
        kind = node.get("type")
        if kind in _NAMED:
            return self._named(node, namespace)
        if kind == "array":
            return {**node, "items": self._node(node["items"], namespace)}
        if kind == "map":
            return {**node, "values": self._node(node["values"], namespace)}
        if isinstance(kind, (dict, list)):
            return {**node, "type": self._node(kind, namespace)}
        return dict(node)

    def _named(self, node: Mapping[str, Json], namespace: str | None) -> dict[str, Json]:
        full = _full_name(node, namespace)
        if full in self._defined:
            raise SchemaError(f"{full} is defined twice; refer to it by name after its definition")
        self._defined.add(full)
        space = _namespace_of(full)
        out: dict[str, Json] = {**node, "name": full.rsplit(".", 1)[-1]}
        if space:
            out["namespace"] = space
        if node["type"] in ("record", "error"):
            out["fields"] = [
                {**f, "type": self._node(f["type"], space)} for f in node.get("fields", [])
            ]
        return out

    def _reference(self, name: str, namespace: str | None) -> Json:
        if name in PRIMITIVES:
            return name
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        if full in self._defined:
            return full
        if full not in self._definitions:
            raise SchemaError(
                f"unknown type {name!r} (resolved as {full!r}); "
                f"add schemas/{full}.avsc or fix the reference"
            )
        return self._named(self._definitions[full], _namespace_of(full))


@functools.cache
def current_store() -> SchemaStore:
    """The contracts this build of sdlcflow writes (schemas/ shipped in the package)."""
    return SchemaStore.from_directory(SCHEMAS_DIR)


def released_versions() -> list[str]:
    """Released contract versions kept under schemas/history/, oldest first (v1, v2, ...)."""
    if not HISTORY_DIR.is_dir():
        return []
    versions = [p.name for p in HISTORY_DIR.iterdir() if p.is_dir() and p.name.startswith("v")]
    return sorted(versions, key=lambda v: int(v[1:]) if v[1:].isdigit() else 0)


@functools.cache
def released_store(version: str) -> SchemaStore:
    """The contracts of one released version, to read data written by older producers."""
    return SchemaStore.from_directory(HISTORY_DIR / version)


def named_types(node: Json, namespace: str | None = None) -> dict[str, dict[str, Json]]:
    """Every named type defined inside a standalone schema, by full name."""
    found: dict[str, dict[str, Json]] = {}

    def walk(item: Json, space: str | None) -> None:
        if isinstance(item, list):
            for branch in item:
                walk(branch, space)
        elif isinstance(item, dict):
            kind = item.get("type")
            if kind in _NAMED:
                full = _full_name(item, space)
                found[full] = item
                for f in item.get("fields", []):
                    walk(f["type"], _namespace_of(full))
            elif kind == "array":
                walk(item["items"], space)
            elif kind == "map":
                walk(item["values"], space)
            elif isinstance(kind, (dict, list)):
                walk(kind, space)

    walk(node, namespace)
    return found


def resolve_type(node: Json, names: Mapping[str, dict[str, Json]], namespace: str | None) -> Json:
    """A field type with a named reference replaced by its definition (primitives unchanged)."""
    if isinstance(node, str) and node not in PRIMITIVES:
        full = node if "." in node or not namespace else f"{namespace}.{node}"
        return names[full]
    if isinstance(node, dict) and isinstance(node.get("type"), (dict, list)):
        return resolve_type(node["type"], names, namespace)
    return node
