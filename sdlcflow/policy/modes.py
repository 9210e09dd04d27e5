"""Per-policy rollout modes: `audit` records what enforce would do, `enforce` blocks.

The mode of every policy is a pure fold of mode-change records (who, when, why), in log order,
so the rollout is as auditable and replayable as any other decision. The core records each
change as a PolicyModeChanged event; `ModeChange.from_event` reads one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sdlcflow.core.events import ALL_POLICIES


class Mode(StrEnum):
    AUDIT = "audit"
    ENFORCE = "enforce"


@dataclass(frozen=True)
class ModeChange:
    """Someone switched a policy (or every policy: `*`) to a mode, at a time, for a reason."""

    policy: str
    mode: Mode
    actor: str
    at_ms: int
    reason: str = ""

    @classmethod
    def from_event(cls, envelope: Any, payload: Any) -> ModeChange:
        """From a core PolicyModeChanged payload and its envelope (actor, occurred_at)."""
        return cls(
            policy=payload.policy,
            mode=Mode.ENFORCE if payload.enforced else Mode.AUDIT,
            actor=envelope.actor.id,
            at_ms=envelope.occurred_at,
            reason=getattr(payload, "reason", ""),
        )


@dataclass(frozen=True)
class PolicyModes:
    """The current mode of every policy, plus the history that produced it.

    Policies nobody switched run in `default` mode. Enforce is the default default: a policy
    shipped in a bundle blocks unless someone deliberately puts it in audit.
    """

    default: Mode = Mode.ENFORCE
    changes: tuple[ModeChange, ...] = ()

    @classmethod
    def from_changes(
        cls, changes: Iterable[ModeChange], default: Mode = Mode.ENFORCE
    ) -> PolicyModes:
        return cls(default=default, changes=tuple(changes))

    def with_change(self, change: ModeChange) -> PolicyModes:
        return PolicyModes(default=self.default, changes=(*self.changes, change))

    def mode_of(self, policy: str) -> Mode:
        """The last change naming this policy or `*` wins; otherwise the default."""
        for change in reversed(self.changes):
            if change.policy in (policy, ALL_POLICIES):
                return change.mode
        return self.default

    def history(self, policy: str) -> tuple[ModeChange, ...]:
        return tuple(c for c in self.changes if c.policy in (policy, ALL_POLICIES))
