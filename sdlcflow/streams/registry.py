"""Schema ids for the Confluent wire format: a Schema Registry, or a local deterministic one.

Subjects follow RecordNameStrategy (the subject is the record's full name, e.g.
`sdlcflow.events.ChangeRequested`), because one topic carries many event types.

Without a Schema Registry (`SDLCFLOW_SCHEMA_REGISTRY_URL` unset) ids come from the schemas
themselves: the id of a schema is the first 31 bits of the SHA-256 of its Parsing Canonical
Form. Every process built from the same `schemas/` therefore agrees on every id without talking
to anyone, an id never changes while the encoding does not, and a collision between two known
schemas is detected when the registry is built.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sdlcflow.errors import SdlcflowError
from sdlcflow.settings import Settings
from sdlcflow.streams.schema_store import (
    ContractSchema,
    SchemaStore,
    current_store,
    released_store,
    released_versions,
)


class RegistryError(SdlcflowError):
    """The schema registry refused or failed a request."""


class SchemaRegistry(Protocol):
    """Where schema ids come from; what the codec needs and nothing more."""

    def id_for(self, schema: ContractSchema) -> int:
        """The id under which `schema` is registered for its subject (registering it if needed)."""
        ...

    def schema_for(self, schema_id: int) -> ContractSchema | None:
        """The writer schema registered under `schema_id`, or None when the id is unknown."""
        ...


def subject_name(schema: ContractSchema) -> str:
    """RecordNameStrategy: the subject is the record's full name, whatever the topic."""
    return schema.full_name


def local_schema_id(schema: ContractSchema) -> int:
    """The deterministic id of a schema: first 31 bits of SHA-256(Parsing Canonical Form)."""
    value = int(schema.fingerprint[:8], 16) & 0x7FFFFFFF
    return value or 1  # 0 is reserved so a zeroed header is never a valid id


class LocalSchemaRegistry:
    """An in-process registry over the current contracts and every released version.

    Registering extra schemas at run time is allowed (tests use it to play a foreign producer).
    """

    def __init__(self, schemas: Iterable[ContractSchema] = ()) -> None:
        self._by_id: dict[int, ContractSchema] = {}
        self._lock = threading.Lock()
        for schema in schemas:
            self.id_for(schema)

    @classmethod
    def from_stores(cls, stores: Iterable[SchemaStore]) -> LocalSchemaRegistry:
        """A registry knowing every top-level schema of the given stores."""
        return cls(schema for store in stores for schema in store)

    @classmethod
    def default(cls) -> LocalSchemaRegistry:
        """The current contracts plus every released version under schemas/history/."""
        stores = [current_store(), *(released_store(v) for v in released_versions())]
        return cls.from_stores(stores)

    def id_for(self, schema: ContractSchema) -> int:
        schema_id = local_schema_id(schema)
        with self._lock:
            known = self._by_id.get(schema_id)
            if known is None:
                self._by_id[schema_id] = schema
            elif known.canonical != schema.canonical:
                raise RegistryError(
                    f"schema id {schema_id} collides: {known.full_name} and {schema.full_name} "
                    "hash alike; rename or change one of them, or use a Schema Registry "
                    "(SDLCFLOW_SCHEMA_REGISTRY_URL)"
                )
        return schema_id

    def schema_for(self, schema_id: int) -> ContractSchema | None:
        return self._by_id.get(schema_id)

    def ids(self) -> Mapping[int, ContractSchema]:
        """Every known id and its schema (for `sdlcflow events` and diagnostics)."""
        return dict(self._by_id)


class ConfluentSchemaRegistry:
    """A Confluent-compatible Schema Registry, through confluent-kafka's client, with caching."""

    def __init__(self, url: str, config: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url, **(config or {})})
        self._url = url
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, ContractSchema] = {}

    def id_for(self, schema: ContractSchema) -> int:
        cached = self._ids.get(schema.fingerprint)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry import Schema

        try:
            schema_id = int(
                self._client.register_schema(subject_name(schema), Schema(schema.to_json(), "AVRO"))
            )
        except Exception as exc:
            raise RegistryError(
                f"registering {subject_name(schema)} with the Schema Registry at {self._url} "
                f"failed: {exc}; check the URL and that the change is compatible"
            ) from exc
        self._ids[schema.fingerprint] = schema_id
        self._schemas[schema_id] = schema
        return schema_id

    def schema_for(self, schema_id: int) -> ContractSchema | None:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise RegistryError(
                f"fetching schema id {schema_id} from {self._url} failed: {exc}"
            ) from exc
        if registered.schema_type not in (None, "AVRO") or registered.schema_str is None:
            return None
        schema = ContractSchema.from_schema(json.loads(registered.schema_str))
        self._schemas[schema_id] = schema
        return schema


def registry_from_settings(settings: Settings | None = None) -> SchemaRegistry:
    """The Schema Registry named by SDLCFLOW_SCHEMA_REGISTRY_URL, else the local registry."""
    settings = settings or Settings.from_env()
    if settings.schema_registry_url:
        return ConfluentSchemaRegistry(settings.schema_registry_url)
    return LocalSchemaRegistry.default()
