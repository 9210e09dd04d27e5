"""Current contracts stay backward and forward compatible with the last released version."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from sdlcflow.streams.compatibility import incompatibilities
from sdlcflow.streams.schema_store import (
    HISTORY_DIR,
    ContractSchema,
    current_store,
    released_store,
    released_versions,
)

EVOLUTION_RULES = "see schemas/README.md, 'Evolving a contract'"


def _previous_release() -> str:
    versions = released_versions()
    assert versions, f"no released contracts under {HISTORY_DIR}; keep at least v1"
    return versions[-1]


class TestReleasedHistory:
    """The current schemas can replace the last release without breaking readers or the log."""

    def test_no_released_event_type_disappears(self) -> None:
        version = _previous_release()
        gone = sorted(
            set(released_store(version).event_names()) - set(current_store().event_names())
        )
        assert not gone, (
            f"event types released in {version} were removed: {gone}; {EVOLUTION_RULES}"
        )

    def test_every_released_schema_is_fully_compatible_with_its_current_version(self) -> None:
        version = _previous_release()
        old_store, new_store = released_store(version), current_store()
        problems = [
            problem
            for name in old_store.names()
            if name in new_store
            for problem in incompatibilities(old_store.get(name), new_store.get(name))
        ]
        assert not problems, (
            f"schemas/ is not backward and forward compatible with {version}:\n  "
            + "\n  ".join(problems)
            + f"\n{EVOLUTION_RULES}"
        )


def _variant(change: Callable[[dict[str, Any]], None]) -> ContractSchema:
    schema = copy.deepcopy(dict(current_store().get("sdlcflow.events.LeaseDenied").schema))
    change(schema)
    return ContractSchema.from_schema(schema)


def _payload_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = schema["fields"][1]["type"]["fields"]
    return fields


def _add_optional(schema: dict[str, Any]) -> None:
    _payload_fields(schema).append({"name": "hint", "type": ["null", "string"], "default": None})


def _add_required(schema: dict[str, Any]) -> None:
    _payload_fields(schema).append({"name": "hint", "type": "string"})


def _drop_required(schema: dict[str, Any]) -> None:
    schema["fields"][1]["type"]["fields"] = [
        f for f in _payload_fields(schema) if f["name"] != "holder"
    ]


def _retype(schema: dict[str, Any]) -> None:
    next(f for f in _payload_fields(schema) if f["name"] == "holder")["type"] = "long"


def _add_symbol(schema: dict[str, Any]) -> None:
    next(f for f in _payload_fields(schema) if f["name"] == "reason")["type"]["symbols"].append(
        "NEW"
    )


def _redocument(schema: dict[str, Any]) -> None:
    _payload_fields(schema)[0]["doc"] = "said differently"


class TestCompatibilityRules:
    """The checker accepts the changes the evolution rules allow and refuses the others."""

    @pytest.mark.parametrize("change", [_add_optional, _redocument])
    def test_allowed_changes_pass(self, change: Callable[[dict[str, Any]], None]) -> None:
        base = current_store().get("sdlcflow.events.LeaseDenied")
        assert incompatibilities(base, _variant(change)) == []

    @pytest.mark.parametrize(
        ("change", "finding"),
        [
            (_add_required, "backward (new reads old)"),
            (_drop_required, "forward (old reads new)"),
            (_retype, "backward (new reads old)"),
            (_add_symbol, "enum symbols ['NEW'] added"),
        ],
    )
    def test_breaking_changes_are_reported(
        self, change: Callable[[dict[str, Any]], None], finding: str
    ) -> None:
        base = current_store().get("sdlcflow.events.LeaseDenied")
        problems = incompatibilities(base, _variant(change))
        assert any(finding in p for p in problems), problems
