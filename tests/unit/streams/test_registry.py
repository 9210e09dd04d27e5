"""Local schema ids are deterministic, stable and collision-checked; subjects are record names."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sdlcflow.streams.registry import (
    LocalSchemaRegistry,
    RegistryError,
    local_schema_id,
    subject_name,
)
from sdlcflow.streams.schema_store import (
    SCHEMAS_DIR,
    ContractSchema,
    SchemaError,
    SchemaStore,
    current_store,
)


class TestLocalRegistry:
    """Two processes built from the same schemas agree on every id without talking."""

    def test_ids_are_the_same_in_independently_built_registries(self) -> None:
        first = LocalSchemaRegistry.from_stores([SchemaStore.from_directory(SCHEMAS_DIR)])
        second = LocalSchemaRegistry.default()
        for schema_id, schema in first.ids().items():
            assert second.schema_for(schema_id) is not None
            assert second.schema_for(schema_id).canonical == schema.canonical  # type: ignore[union-attr]

    def test_ids_ignore_docs_but_not_the_encoding(self) -> None:
        schema = current_store().get("sdlcflow.events.ChangeCancelled")
        redocumented = copy.deepcopy(dict(schema.schema))
        redocumented["doc"] = "another explanation"
        assert local_schema_id(ContractSchema.from_schema(redocumented)) == local_schema_id(schema)
        changed = copy.deepcopy(dict(schema.schema))
        changed["fields"][1]["type"]["fields"].append(
            {"name": "urgent", "type": "boolean", "default": False}
        )
        assert local_schema_id(ContractSchema.from_schema(changed)) != local_schema_id(schema)

    def test_ids_fit_a_positive_int32(self) -> None:
        assert all(0 < i < 2**31 for i in LocalSchemaRegistry.default().ids())

    def test_a_colliding_id_is_refused(self) -> None:
        registry = LocalSchemaRegistry()
        schema = current_store().get("sdlcflow.events.ChangeCancelled")
        other = current_store().get("sdlcflow.events.TaskSkipped")
        registry.id_for(schema)
        impostor = ContractSchema(
            other.full_name, other.schema, other.canonical, schema.fingerprint, other.wire
        )
        with pytest.raises(RegistryError, match="collides"):
            registry.id_for(impostor)

    def test_unknown_ids_are_none(self) -> None:
        assert LocalSchemaRegistry().schema_for(12345) is None

    def test_the_subject_is_the_record_full_name(self) -> None:
        schema = current_store().get("sdlcflow.events.ChangeRequested")
        assert subject_name(schema) == "sdlcflow.events.ChangeRequested"


class TestSchemaStore:
    """Schema files resolve into standalone schemas; inconsistent files are refused clearly."""

    def test_every_event_schema_is_standalone(self) -> None:
        store = current_store()
        for name in store.event_names():
            text = store.get(name).to_json()
            assert (
                ContractSchema.from_schema(json.loads(text)).canonical == store.get(name).canonical
            )

    def test_a_file_named_after_another_type_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "sdlcflow.Wrong.avsc").write_text(
            '{"type": "enum", "name": "Right", "namespace": "sdlcflow", "symbols": ["a"]}'
        )
        with pytest.raises(SchemaError, match=r"rename the file to sdlcflow\.Right\.avsc"):
            SchemaStore.from_directory(tmp_path)

    def test_an_unknown_reference_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "sdlcflow.A.avsc").write_text(
            '{"type": "record", "name": "A", "namespace": "sdlcflow", '
            '"fields": [{"name": "b", "type": "sdlcflow.B"}]}'
        )
        with pytest.raises(SchemaError, match=r"add schemas/sdlcflow.B.avsc"):
            SchemaStore.from_directory(tmp_path).get("sdlcflow.A")
