"""The events of sdlcflow as the pure core sees them: one envelope, one payload per event type.

The Avro schemas under `schemas/` are the wire contract; these frozen dataclasses are checked
against them by a test so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ActorKind(str, Enum):
    """Who caused an event; what it may do follows from the kind and its credential's scope."""

    AGENT = "agent"
    HUMAN = "human"
    COORDINATOR = "coordinator"
    PRODUCER = "producer"
    OPS = "ops"


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str


@dataclass(frozen=True)
class Envelope:
    """Fields every event carries, whatever its type.

    `occurred_at` is milliseconds since the epoch (Avro timestamp-millis); it is supplied by the
    shell, never read from a clock inside the core. `signature` is present where the actor is an
    agent or a human; `credential` is the actor's short-lived scoped token (sdlcflow.identity),
    which the shell verifies before the core sees the event.
    """

    event_id: str
    type: str
    occurred_at: int
    repo: str
    change_id: str | None
    task_id: str | None
    trace_id: str
    causation_id: str | None
    actor: Actor
    schema_version: int = 1
    signature: str | None = None
    credential: str | None = None
