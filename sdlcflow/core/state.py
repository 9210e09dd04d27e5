"""The coordinator's state for one repository: the records `evolve` folds events into.

State is a fold of the coordinator's decisions (DESIGN.md, Functional core): replaying
`sdlc.coordinator` from the start through `evolve` (sdlcflow.core.fold) rebuilds it exactly.

Values are frozen dataclasses; collections are tuples, frozensets and mappings that are
never mutated after construction (copy on write), so a state can be shared freely.

The records live apart from the fold over them because the fold is compiled with mypyc
(tools/compile_core.py) and these are not: mypyc would replace their annotations by bare
runtime classes (`Mapping` for `Mapping[str, ChangeState]`), and the codec builds its decoders
from those annotations (`RepoState.from_plain`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sdlcflow.core import events as ev
from sdlcflow.core.codec import from_plain, to_plain
from sdlcflow.core.events import ChangeFacts, PolicyDecision, TaskContract, VerifiedState
from sdlcflow.core.records import fast_init

# How many closed change ids a repository remembers so a late duplicate of their request is
# refused instead of re-planned.
CLOSED_MEMORY = 10_000
# How many ids of inputs about no live change (rejected as unknown) a repository remembers, so
# that a replay of such an input after its change appears is still recognised as a duplicate.
RECENT_MEMORY = 1_024


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    OFFERED = "OFFERED"
    LEASED = "LEASED"
    RETRY_WAIT = "RETRY_WAIT"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"
    DEAD = "DEAD"
    CANCELLED = "CANCELLED"


# Tuples, not sets: membership by identity is much cheaper than Enum.__hash__ on the hot path.
DONE = (TaskStatus.SUCCEEDED, TaskStatus.SKIPPED)
TERMINAL = (*DONE, TaskStatus.DEAD, TaskStatus.CANCELLED)


class Outcome(StrEnum):
    PROMOTED = "PROMOTED"
    BLOCKED = "BLOCKED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@fast_init
@dataclass(frozen=True)
class Lease:
    """A live lease: the holder may work on the task until `expires_at` (heartbeats extend it
    up to `deadline`, the task's timeout); results must carry `epoch` and `inputs`."""

    lease_id: str
    holder: str
    epoch: int
    expires_at: int
    deadline: int
    attempt: int
    inputs: tuple[ev.ArtifactRef, ...]
    granted_at: int = 0


@fast_init
@dataclass(frozen=True)
class TaskState:
    contract: TaskContract
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    epoch: int = 0
    lease: Lease | None = None
    retry_due: int | None = None
    verified: VerifiedState | None = None
    decision: str = ""
    approvers: tuple[str, ...] = ()
    evidence_digest: str = ""
    completions: int = 0
    # an approval task: signatures needed (template and policy), when it was requested, and
    # the reviewer group it was escalated to when its timeout passed (with when)
    approvals_needed: int = 0
    requested_at: int = 0
    escalated_to: str = ""
    escalated_at: int = 0
    # when the task was last offered: an offer nobody took is made again after a while
    offered_at: int = 0


@fast_init
@dataclass(frozen=True)
class ChangeState:
    """One live change: its facts, the state tuple it is verifying, its tasks and claims.

    `updated_at` is the time of the producer's input that last set the change's head (its
    request or an update); an update older than that is stale. `landed_base` is the head of the
    last overlapping change that landed before it, which the coordinator re-verified it on top
    of; from then on the change's base is the coordinator's, whatever base updates name.
    """

    change_id: str
    template: str
    template_digest: str
    facts: ChangeFacts
    state: VerifiedState
    tasks: Mapping[str, TaskState]
    claims: tuple[str, ...]
    submitted_by: str
    revision: int = 0
    holds: bool = False
    waiting_for: tuple[str, ...] = ()
    policy_decision: str = ""
    policy_enforced: bool = False
    evidence_digest: str = ""
    policy_approvals: int = 0
    processed: frozenset[str] = frozenset()
    updated_at: int = 0
    landed_base: str = ""


@fast_init
@dataclass(frozen=True)
class RepoState:
    """Everything the coordinator knows about one repository; the shell keeps one per repo key.

    `holders` maps a claimed resource (`path:`, `key:`, `env:`) to the change holding it;
    `closed` remembers recent outcomes (oldest first, bounded); `recent` remembers ids of inputs
    that concerned no live change (bounded), keyed to their time; `watermark` is the latest
    decision time applied; `policy_modes` holds the modes ops set (policy -> enforced), which
    every offer carries.
    """

    repo: str = ""
    changes: Mapping[str, ChangeState] = field(default_factory=dict)
    holders: Mapping[str, str] = field(default_factory=dict)
    closed: Mapping[str, str] = field(default_factory=dict)
    recent: Mapping[str, int] = field(default_factory=dict)
    watermark: int = 0
    policy_modes: Mapping[str, bool] = field(default_factory=dict)

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready form for the shell's table."""
        plain: dict[str, Any] = to_plain(self)
        return plain

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> RepoState:
        return from_plain(cls, data)


def claim_keys(facts: ChangeFacts, tasks: tuple[TaskContract, ...]) -> tuple[str, ...]:
    """What a change may touch, as resource keys for conflict detection and resource leases."""
    keys: list[str] = []
    paths = [*facts.paths, *(p for t in tasks for p in t.outputs.paths)]
    resources = [*facts.resources, *(r for t in tasks for r in t.outputs.resources)]
    envs = [*facts.environments, *(e for t in tasks for e in t.outputs.environments)]
    for prefix, values in (("path:", paths), ("key:", resources), ("env:", envs)):
        for value in values:
            key = prefix + value
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def inputs_of(verified: VerifiedState) -> tuple[ev.ArtifactRef, ...]:
    """The artifacts every task of a change reads: its base, head and lockfile."""
    return (
        ev.ArtifactRef("base", verified.base_sha),
        ev.ArtifactRef("head", verified.head_sha),
        ev.ArtifactRef("lockfile", verified.lockfile_digest),
    )


__all__ = [
    "CLOSED_MEMORY",
    "DONE",
    "RECENT_MEMORY",
    "TERMINAL",
    "ChangeState",
    "Lease",
    "Outcome",
    "PolicyDecision",
    "RepoState",
    "TaskState",
    "TaskStatus",
    "claim_keys",
    "inputs_of",
]
