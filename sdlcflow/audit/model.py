"""An audit row as the analyst side reads it back: pure data, no driver types."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class AuditRow:
    """One stored event with the columns analysts filter on; `extra` holds table-specific ones."""

    event_id: str
    event_type: str
    occurred_at: int  # ms since the epoch
    repo: str
    change_id: str | None
    task_id: str | None
    trace_id: str
    causation_id: str | None
    actor_kind: str
    actor_id: str
    outcome: str
    before_sha: str | None
    after_sha: str | None
    topic: str
    partition: int
    offset: int
    json: str
    avro: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @functools.cached_property
    def document(self) -> dict[str, Any]:
        """The stored JSON rendering: {"envelope": ..., "payload": ...}."""
        parsed = orjson.loads(self.json) if self.json else {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def payload(self) -> dict[str, Any]:
        value = self.document.get("payload")
        return value if isinstance(value, dict) else {}

    def summary(self) -> dict[str, Any]:
        """The filter columns (no bytes) for JSON output and exports."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at,
            "repo": self.repo,
            "change_id": self.change_id,
            "task_id": self.task_id,
            "trace_id": self.trace_id,
            "causation_id": self.causation_id,
            "actor_kind": self.actor_kind,
            "actor_id": self.actor_id,
            "outcome": self.outcome,
            "before_sha": self.before_sha,
            "after_sha": self.after_sha,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }
