"""The change mix the load generator submits, and how each step of each change behaves.

Every choice is a pure function of a seed and the change id (a SHA-256 draw), so the load
generator, the agents (in another process) and the baseline agree on which change uses which
template, which steps fail and which policies say REVIEW without sending each other anything:
the agent of a step recomputes the draw from the change id it was leased.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sdlcflow.errors import SdlcflowError

# The bench templates shipped in sdlcflow/templates: name -> checks before policy, and the
# steps planned without and with a human review (approval runs only on REVIEW).
TEMPLATE_STEPS: Mapping[str, int] = {
    "bench-chain": 3,
    "bench-fan": 5,
    "bench-wide": 8,
    "bench-deep": 11,
}
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "bench-chain": 0.25,
    "bench-fan": 0.40,
    "bench-wide": 0.20,
    "bench-deep": 0.15,
}
# The code-change shape of 5 steps (lint and test fanned out, policy, merge, promote) whose
# end to end the "5-step DAG change" target is about.
FIVE_STEP_TEMPLATE = "bench-fan"
# The first step of every bench template: a dead-lettered change fails there.
FIRST_STEP: Mapping[str, str] = {
    "bench-chain": "test",
    "bench-fan": "lint",
    "bench-wide": "build",
    "bench-deep": "build",
}
MAX_ATTEMPTS = 3  # what the bench templates give their check steps
CHECK_CAPABILITIES = ("lint", "test", "policy", "merge", "promote")


class MixError(SdlcflowError):
    """A mix parameter is out of range."""


class Outcome(StrEnum):
    """How a change of the mix must end."""

    PROMOTED = "promoted"
    FAILED = "failed"


@dataclass(frozen=True)
class MixSpec:
    """The shape of the load: template weights and the rates of retries, dead letters, reviews.

    retry_rate: share of (change, step) pairs whose first attempt fails (retryable).
    dead_rate: share of changes whose first step fails every attempt (dead letter, escalation).
    review_rate: share of changes whose policy says REVIEW (a signed approval follows).
    """

    seed: str = "sdlcflow-bench"
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    retry_rate: float = 0.05
    dead_rate: float = 0.02
    review_rate: float = 0.10

    def checked(self) -> MixSpec:
        unknown = sorted(set(self.weights) - set(TEMPLATE_STEPS))
        if unknown:
            raise MixError(f"unknown bench templates {unknown}; use: {', '.join(TEMPLATE_STEPS)}")
        if not self.weights or any(w < 0 for w in self.weights.values()):
            raise MixError("template weights must be non-negative and not all missing")
        if sum(self.weights.values()) <= 0:
            raise MixError("template weights must not all be zero")
        for name in ("retry_rate", "dead_rate", "review_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise MixError(f"{name} is {getattr(self, name)}; it must be within 0..1")
        return self


def draw(seed: str, *parts: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the parts."""
    digest = hashlib.sha256("\x1f".join((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def template_for(spec: MixSpec, change_id: str) -> str:
    """The bench template of a change, drawn by the weights."""
    total = sum(spec.weights.values())
    point = draw(spec.seed, "template", change_id) * total
    chosen = ""
    for name in TEMPLATE_STEPS:  # fixed order: the same draw picks the same template
        weight = spec.weights.get(name, 0.0)
        if weight <= 0:
            continue
        chosen = name
        if point < weight:
            return name
        point -= weight
    return chosen


def says_review(spec: MixSpec, change_id: str) -> bool:
    return draw(spec.seed, "review", change_id) < spec.review_rate


def is_dead(spec: MixSpec, change_id: str) -> bool:
    return draw(spec.seed, "dead", change_id) < spec.dead_rate


def failing_attempts(spec: MixSpec, change_id: str, template: str, step: str) -> int:
    """How many attempts of this step fail: 0, 1 (one retry), or MAX_ATTEMPTS (dead letter)."""
    if step == FIRST_STEP[template] and is_dead(spec, change_id):
        return MAX_ATTEMPTS
    if step in ("policy", "approval", "merge", "promote"):
        return 0  # gates and decisions fail only through the checks before them
    return 1 if draw(spec.seed, "retry", change_id, step) < spec.retry_rate else 0


def should_fail(spec: MixSpec, change_id: str, template: str, step: str, attempt: int) -> bool:
    """Whether attempt `attempt` (1-based) of a step fails."""
    return attempt <= failing_attempts(spec, change_id, template, step)


def expected_outcome(spec: MixSpec, change_id: str) -> Outcome:
    return Outcome.FAILED if is_dead(spec, change_id) else Outcome.PROMOTED


def planned_steps(spec: MixSpec, change_id: str) -> int:
    """Steps that run for the change: the template's, plus the approval on REVIEW."""
    return TEMPLATE_STEPS[template_for(spec, change_id)] + (
        1 if says_review(spec, change_id) else 0
    )


def template_of_task(task_id: str, change_id: str, spec: MixSpec) -> tuple[str, str]:
    """(template, step) of a task id `<change>/<step>` (the planner's naming)."""
    prefix = f"{change_id}/"
    if not task_id.startswith(prefix):
        raise MixError(f"task id {task_id!r} is not a step of change {change_id!r}")
    return template_for(spec, change_id), task_id[len(prefix) :]
