"""Repository states with leased and unleased tasks, for the live-lease tests."""

from __future__ import annotations

from sdlcflow.core.events import Authority, Backoff, Outputs, TaskContract
from sdlcflow.core.state import ChangeState, Lease, RepoState, TaskState


def task(capability: str, leased: bool) -> TaskState:
    """A task of `capability`, holding a lease or not."""
    contract = TaskContract(
        id=f"{capability}-task", step=capability, capability=capability, needs=(), inputs=(),
        outputs=Outputs(), preconditions=(), when="", timeout_ms=1000, authority=Authority.AGENT,
        approvals_required=0, max_attempts=1, backoff=Backoff(1, 1, 0.0), compensation=None,
    )  # fmt: skip
    lease = Lease("l", "agent", 1, 10, 10, 1, ()) if leased else None
    return TaskState(contract=contract, lease=lease)


def state(*tasks: TaskState) -> RepoState:
    """A repository with one change made of `tasks` (only its tasks matter here)."""
    change = ChangeState.__new__(ChangeState)
    object.__setattr__(change, "tasks", {t.contract.id: t for t in tasks})
    return RepoState(repo="acme/login", changes={"c1": change})
