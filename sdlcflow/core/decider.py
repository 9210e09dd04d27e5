"""The coordinator's rules: `decide(state, event) -> decisions`, one handler per input type.

Pure: time is the event's `occurred_at`, ids are uuid5 of the causing event id and an index,
retry jitter is derived from the event id. Rejections are decisions (EventRejected,
LeaseDenied, ResultRejected ...), never exceptions. `handle` returns the decisions together
with the state they lead to, which the shell stores; the state equals folding the decisions
through `evolve`, so replaying `sdlc.coordinator` rebuilds it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from sdlcflow.core import events as ev
from sdlcflow.core.events import (
    INPUT_ACTOR_KINDS,
    REVIEW_CAPABILITY,
    Actor,
    ActorKind,
    ActorScope,
    Authority,
    Envelope,
    Event,
    InputRejection,
    OfferReason,
    Payload,
    PolicyDecision,
    RejectReason,
    RevokeReason,
    TaskContract,
    VerifiedState,
    reviewer_group_capability,
)
from sdlcflow.core.expr import evaluate
from sdlcflow.core.fold import evolve
from sdlcflow.core.planner import Template, plan
from sdlcflow.core.records import build, replace
from sdlcflow.core.state import (
    DONE,
    TERMINAL,
    ChangeState,
    Lease,
    Outcome,
    RepoState,
    TaskState,
    TaskStatus,
    inputs_of,
)

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://sdlcflow.dev/events")
COORDINATOR: Final = Actor(ActorKind.COORDINATOR, "coordinator")


@dataclass(frozen=True)
class CoreConfig:
    """What the rules need besides state and event: the parsed templates and lease timing."""

    templates: Mapping[str, Template] = field(default_factory=dict)
    lease_ttl_ms: int = 30_000

    @property
    def offer_timeout_ms(self) -> int:
        """How long an offer may go untaken before it is made again: the offer (or the agent
        that read it) may have been lost, e.g. in a rebalance or a crash before its request."""
        return OFFER_TIMEOUT_TTLS * self.lease_ttl_ms


#: An untaken offer is repeated after this many lease TTLs (long enough for a busy agent).
OFFER_TIMEOUT_TTLS = 4


_NAMESPACE_BYTES: Final = NAMESPACE.bytes


# the RFC 4122 variant bits applied to one hex digit: 10xx
_VARIANT: Final = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def derive_id(cause_id: str, index: int | str) -> str:
    """A deterministic id for the index-th thing caused by an event (replay gives the same).

    Exactly `str(uuid.uuid5(NAMESPACE, f"{cause_id}/{index}"))`, computed from the hex digest
    without building UUID objects, because this runs for every decision.
    """
    return _uuid5_text(hashlib.sha1(_NAMESPACE_BYTES + f"{cause_id}/{index}".encode()).hexdigest())


def _uuid5_text(h: str) -> str:
    """The canonical text of a version-5 UUID from the SHA-1 hex digest it is cut from."""
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def jitter_fraction(event_id: str) -> float:
    """A number in [0, 1) derived from the event id: jitter without randomness."""
    return int(derive_id(event_id, "jitter")[:8], 16) / 2**32


def backoff_delay(backoff: ev.Backoff, attempt: int, event_id: str) -> int:
    """Exponential backoff capped at max_ms, spread by +/- jitter around the nominal delay."""
    nominal = min(backoff.max_ms, backoff.base_ms * 2 ** max(attempt - 1, 0))
    spread = 1.0 + backoff.jitter * (2.0 * jitter_fraction(event_id) - 1.0)
    # at least 1 ms, so a retry is always due strictly after the failure that scheduled it
    return max(1, min(backoff.max_ms, int(nominal * spread)))


# --------------------------------------------------------------------------------------------
# the run: emitted decisions are folded into a working state as they are made


class _Run:
    """Collects the decisions for one input and keeps the state they lead to up to date."""

    __slots__ = (
        "cause",
        "cause_id",
        "config",
        "id_prefix",
        "now",
        "out",
        "repo",
        "state",
        "trace_id",
    )

    def __init__(self, state: RepoState, cause: Event, config: CoreConfig) -> None:
        self.state = state
        self.cause = cause
        self.config = config
        envelope = cause.envelope
        self.now = envelope.occurred_at
        self.cause_id = envelope.event_id
        self.repo = envelope.repo
        self.trace_id = envelope.trace_id
        self.out: list[Event] = []
        # what `derive_id(cause_id, index)` hashes, up to the index
        self.id_prefix = _NAMESPACE_BYTES + f"{envelope.event_id}/".encode()

    def emit(self, payload: Payload, change_id: str | None, task_id: str | None = None) -> None:
        """Decide `payload`: its envelope names this input as the cause and the coordinator as
        the actor, its id is `derive_id(cause, index)`; fold it into the working state."""
        out = self.out
        h = hashlib.sha1(self.id_prefix + b"%d" % len(out)).hexdigest()
        envelope = build(  # every field, in field order
            Envelope,
            {
                "event_id": f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}",
                "type": type(payload).__name__,
                "occurred_at": self.now,
                "repo": self.repo,
                "change_id": change_id,
                "task_id": task_id,
                "trace_id": self.trace_id,
                "causation_id": self.cause_id,
                "actor": COORDINATOR,
                "schema_version": 1,
                "signature": None,
                "credential": None,
            },
        )
        event = build(Event, {"envelope": envelope, "payload": payload, "scope": None})
        self.state = evolve(self.state, event)
        out.append(event)

    def reject(self, reason: InputRejection, detail: str) -> None:
        envelope = self.cause.envelope
        self.emit(
            ev.EventRejected(
                rejected_event_id=envelope.event_id,
                rejected_type=envelope.type,
                actor_id=envelope.actor.id,
                reason=reason,
                detail=detail,
            ),
            envelope.change_id,
            envelope.task_id,
        )

    def change(self, change_id: str) -> ChangeState | None:
        return self.state.changes.get(change_id)


Handler = Callable[[_Run, Event], None]

# per input type name: its payload class and the actor kinds it is accepted from (a tuple:
# identity membership, no Enum hashing)
_INPUT_RULES: Final = {
    name: (cls, tuple(INPUT_ACTOR_KINDS[name])) for name, cls in ev.INPUT_TYPES.items()
}


def handle(
    state: RepoState, event: Event, config: CoreConfig | None = None
) -> tuple[RepoState, tuple[Event, ...]]:
    """Decide on one input and return (the new state, the decisions), ready for the shell."""
    run = _Run(state, event, config or _DEFAULT_CONFIG)
    if not _already_processed(state, event) and _admissible(run, event):
        HANDLERS[type(event.payload)](run, event)
    return run.state, tuple(run.out)


_DEFAULT_CONFIG: Final = CoreConfig()


def decide(state: RepoState, event: Event, config: CoreConfig | None = None) -> tuple[Event, ...]:
    """The decisions one input leads to; `evolve` over them gives the next state."""
    return handle(state, event, config)[1]


def _already_processed(state: RepoState, event: Event) -> bool:
    event_id = event.envelope.event_id
    if event_id in state.recent:
        return True
    change_id = event.envelope.change_id
    change = state.changes.get(change_id) if change_id is not None else None
    return change is not None and event_id in change.processed


def _admissible(run: _Run, event: Event) -> bool:
    """Kind and scope checks common to every input (invariant 8)."""
    envelope = event.envelope
    rule = _INPUT_RULES.get(envelope.type)
    if rule is None:
        return False  # decisions fed back in are not commands: nothing to decide
    expected, allowed = rule
    if type(event.payload) is not expected:
        detail = f"envelope says {envelope.type}, payload is {type(event.payload).__name__}"
        run.reject(InputRejection.WRONG_KIND, detail)
        return False
    kind = envelope.actor.kind
    if kind not in allowed:
        kinds = ", ".join(sorted(kind.value for kind in allowed))
        run.reject(InputRejection.WRONG_KIND, f"{envelope.type} is accepted from {kinds} only")
        return False
    if kind is not ActorKind.AGENT and kind is not ActorKind.HUMAN:
        return True
    scope = event.scope
    if scope is None:
        run.reject(InputRejection.MISSING_SCOPE, "agent and human events need a verified scope")
        return False
    if scope.actor_id != envelope.actor.id:
        run.reject(InputRejection.ACTOR_MISMATCH, f"credential is for {scope.actor_id!r}")
        return False
    if scope.expires_at <= run.now:
        run.reject(InputRejection.SCOPE_EXPIRED, f"credential expired at {scope.expires_at}")
        return False
    if not _matches_any(envelope.repo, scope.repos):
        run.reject(InputRejection.REPO_OUT_OF_SCOPE, f"repo {envelope.repo!r} not in credential")
        return False
    return True


def _matches_any(value: str, patterns: tuple[str, ...]) -> bool:
    if value in patterns or "*" in patterns:
        return True  # the common cases, without fnmatch
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _live_change(run: _Run, event: Event) -> ChangeState | None:
    """The event's change, or None after recording why it cannot be acted on."""
    change_id = event.envelope.change_id
    change = run.change(change_id) if change_id else None
    if change is None:
        outcome = run.state.closed.get(change_id or "")
        if outcome is not None:
            run.reject(InputRejection.CHANGE_CLOSED, f"change closed as {outcome}")
        else:
            run.reject(InputRejection.UNKNOWN_CHANGE, f"no live change {change_id!r}")
    return change


def _live_task(run: _Run, event: Event) -> tuple[ChangeState, TaskState] | None:
    envelope = event.envelope
    change_id = envelope.change_id
    if change_id:  # the common case first: a live change and task, found with two lookups
        change = run.state.changes.get(change_id)
        task = change.tasks.get(envelope.task_id or "") if change is not None else None
        if change is not None and task is not None:
            return change, task
    change = _live_change(run, event)
    if change is None:
        return None
    task = change.tasks.get(event.envelope.task_id or "")
    if task is None:
        run.reject(InputRejection.UNKNOWN_TASK, f"no task {event.envelope.task_id!r} in change")
        return None
    return change, task


# --------------------------------------------------------------------------------------------
# change lifecycle


def _on_change_requested(run: _Run, event: Event) -> None:
    p: ev.ChangeRequested = event.payload  # type: ignore[assignment]
    change_id = event.envelope.change_id
    if not change_id:
        run.reject(InputRejection.UNKNOWN_CHANGE, "ChangeRequested needs a change_id")
        return
    if change_id in run.state.closed:
        run.reject(InputRejection.CHANGE_CLOSED, f"change closed as {run.state.closed[change_id]}")
        return
    live = run.state.changes.get(change_id)
    if live is not None:
        update = ev.ChangeUpdated(p.base_sha, p.head_sha, p.lockfile_digest, p.paths, p.resources)
        _producer_update(run, live, update)
        return
    template = run.config.templates.get(p.template)
    if template is None:
        known = ", ".join(sorted(run.config.templates)) or "none loaded"
        run.reject(InputRejection.UNKNOWN_TEMPLATE, f"no template {p.template!r}; known: {known}")
        return
    facts = ev.ChangeFacts(p.kind, p.paths, p.labels, p.resources, p.environments)
    verified = VerifiedState(p.head_sha, p.base_sha, p.lockfile_digest)
    tasks = plan(template, change_id, facts, inputs_of(verified))
    run.emit(
        ev.ChangePlanned(
            template=template.name,
            template_digest=template.digest,
            facts=facts,
            state=verified,
            tasks=tasks,
            submitted_by=event.envelope.actor.id,
            requested_event_id=event.envelope.event_id,
        ),
        change_id,
    )
    _detect_conflicts(run, change_id)
    _advance(run, change_id)


def _on_change_updated(run: _Run, event: Event) -> None:
    p: ev.ChangeUpdated = event.payload  # type: ignore[assignment]
    change = _live_change(run, event)
    if change is not None:
        _producer_update(run, change, p)


def _producer_update(run: _Run, change: ChangeState, update: ev.ChangeUpdated) -> None:
    """The producer says the change's head (or base or lockfile) is now `update`'s.

    An update older than the one that last set the head is stale (reordered, or a replay of one
    that found nothing to change then), so it changes nothing now either. Once the coordinator
    re-verified the change on top of a landed change, the base stays the coordinator's: any base
    an update names (the branch's merge-base, an update made before the landing) could test the
    change without what landed (the motivating incident)."""
    if run.now < change.updated_at:
        return
    if change.landed_base:
        update = replace(update, base_sha=change.landed_base)
    _revise(run, change.change_id, ev.ReviseReason.HEAD_MOVED, update)


def _on_change_cancelled(run: _Run, event: Event) -> None:
    p: ev.ChangeCancelled = event.payload  # type: ignore[assignment]
    change_id = event.envelope.change_id
    if change_id and change_id not in run.state.changes and change_id not in run.state.closed:
        # cancelled before its request arrived (reordered input): the cancellation wins, and
        # the request, when it comes, finds the change closed
        run.emit(ev.ChangeWithdrawn(p.reason, event.envelope.actor.id), change_id)
        return
    change = _live_change(run, event)
    if change is not None:
        _close(run, change.change_id, Outcome.CANCELLED, p.reason, event.envelope.actor.id)


def _revise(run: _Run, change_id: str, reason: ev.ReviseReason, update: ev.ChangeUpdated) -> None:
    """The change's inputs moved: revoke leases, invalidate approvals, re-run every task."""
    change = run.state.changes[change_id]
    verified = VerifiedState(update.head_sha, update.base_sha, update.lockfile_digest)
    old = change.state
    if (old.head_sha, old.base_sha, old.lockfile_digest) == (
        verified.head_sha,
        verified.base_sha,
        verified.lockfile_digest,
    ):
        return
    revoke = (
        RevokeReason.HEAD_MOVED if reason is ev.ReviseReason.HEAD_MOVED else RevokeReason.BASE_MOVED
    )
    for task in change.tasks.values():
        if task.lease is not None:
            _revoke(run, change_id, task, revoke)
        if task.approvers:
            run.emit(
                ev.ApprovalInvalidated(f"{reason.value}: state changed", old, task.approvers),
                change_id,
                task.contract.id,
            )
    run.emit(
        ev.ChangeRevised(
            reason=reason,
            revision=change.revision + 1,
            state=verified,
            paths=update.paths,
            resources=update.resources,
            rerun=tuple(change.tasks),
            tasks=_replan(run, change, verified, update),
        ),
        change_id,
    )
    if run.state.changes[change_id].claims != change.claims:
        _reclaim(run, change)
    _advance(run, change_id)


def _replan(
    run: _Run, change: ChangeState, verified: VerifiedState, update: ev.ChangeUpdated
) -> tuple[TaskContract, ...]:
    """New contracts when the change now touches other paths or resources, so its declared
    outputs (and claims) follow it; () when they did not move or the template changed since."""
    facts = change.facts
    moved = (update.paths and update.paths != facts.paths) or (
        update.resources and update.resources != facts.resources
    )
    template = run.config.templates.get(change.template)
    if not moved or template is None or template.digest != change.template_digest:
        return ()
    new_facts = ev.ChangeFacts(
        facts.kind,
        update.paths or facts.paths,
        facts.labels,
        update.resources or facts.resources,
        facts.environments,
    )
    return plan(template, change.change_id, new_facts, inputs_of(verified))


def _reclaim(run: _Run, before: ChangeState) -> None:
    """The change's claims moved: give back what it held, record new overlaps, and take the
    resources again only if they are free (waiters that were behind it get their turn)."""
    change_id = before.change_id
    if before.holds:
        run.emit(ev.ResourceLeaseReleased(before.claims, False), change_id)
    change = run.state.changes[change_id]
    for other in tuple(run.state.changes.values()):
        if other.change_id == change_id or other.change_id in change.waiting_for:
            continue
        fresh = _overlaps(change.claims, other.claims)
        if fresh and not _overlaps(before.claims, other.claims):
            run.emit(ev.ConflictDetected(other.change_id, fresh), change_id)
    _grant_resources_if_free(run, change_id)
    for other_id in tuple(run.state.changes):
        if other_id != change_id:
            _grant_resources_if_free(run, other_id)


def _revoke(run: _Run, change_id: str, task: TaskState, reason: RevokeReason) -> None:
    lease = task.lease
    assert lease is not None
    run.emit(
        ev.LeaseRevoked(lease.lease_id, lease.epoch, lease.holder, reason),
        change_id,
        task.contract.id,
    )
    _compensate(run, change_id, task.contract, lease, f"lease revoked: {reason.value}")


def _compensate(
    run: _Run, change_id: str, contract: TaskContract, lease: Lease, reason: str
) -> None:
    run.emit(
        ev.CompensationRequested(
            lease_id=lease.lease_id,
            epoch=lease.epoch,
            holder=lease.holder,
            compensation=contract.compensation or "discard",
            reason=reason,
        ),
        change_id,
        contract.id,
    )


def _close(run: _Run, change_id: str, outcome: Outcome, reason: str, by: str) -> None:
    """End a change: revoke and cancel what is open, release its resources, wake waiters."""
    change = run.state.changes[change_id]
    revoke = (
        RevokeReason.CHANGE_CANCELLED
        if outcome is Outcome.CANCELLED
        else RevokeReason.CHANGE_CLOSED
    )
    for task in change.tasks.values():
        if task.status in TERMINAL:
            continue
        if task.lease is not None:
            _revoke(run, change_id, task, revoke)
        run.emit(
            ev.TaskCancelled(f"change {outcome.value.lower()}: {reason}"),
            change_id,
            task.contract.id,
        )
    landed = outcome is Outcome.PROMOTED
    if change.holds:
        run.emit(ev.ResourceLeaseReleased(change.claims, landed), change_id)
    closing: Payload
    if outcome is Outcome.PROMOTED:
        environments = tuple(
            e
            for t in change.tasks.values()
            if t.contract.gate
            for e in t.contract.outputs.environments
        )
        closing = ev.ChangePromoted(run.state.changes[change_id].state, environments)
    elif outcome is Outcome.BLOCKED:
        closing = ev.ChangeBlocked(reason, by)
    elif outcome is Outcome.FAILED:
        closing = ev.ChangeFailed(reason, by)
    else:
        closing = ev.ChangeWithdrawn(reason, by)
    run.emit(closing, change_id)
    _wake_waiters(run, change, landed)


# --------------------------------------------------------------------------------------------
# conflicts and resource leases


@lru_cache(maxsize=8192)
def _overlaps(mine: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[str, ...]:
    """The claims of `mine` that one of `theirs` names or matches as a glob, in `mine`'s order.

    Cached: changes compare the same claim tuples again at every resource decision, and the
    result depends on nothing else."""
    found: list[str] = []
    for a in mine:
        for b in theirs:
            same_kind = a[:4] == b[:4]
            matches = a == b or (
                same_kind and (fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a))
            )
            if matches and a not in found:
                found.append(a)
    return tuple(found)


def _detect_conflicts(run: _Run, change_id: str) -> None:
    """Record overlaps with earlier live changes; take the resources if nobody earlier has them."""
    change = run.state.changes[change_id]
    for other in tuple(run.state.changes.values()):
        if other.change_id == change_id:
            continue
        overlap = _overlaps(change.claims, other.claims)
        if overlap:
            run.emit(ev.ConflictDetected(other.change_id, overlap), change_id)
    _grant_resources_if_free(run, change_id)


def _grant_resources_if_free(run: _Run, change_id: str) -> None:
    change = run.state.changes[change_id]
    if change.holds or not change.claims:
        return
    earlier = True
    for other in run.state.changes.values():
        if other.change_id == change_id:
            earlier = False  # later changes only block by holding what this one claims
            continue
        if (earlier or other.holds) and _overlaps(change.claims, other.claims):
            return
    run.emit(ev.ResourceLeaseGranted(change.claims), change_id)
    for task in run.state.changes[change_id].tasks.values():
        if task.contract.gate and task.status is TaskStatus.OFFERED:
            _offer(run, change_id, task, OfferReason.READY, task.attempt)


def _wake_waiters(run: _Run, closed: ChangeState, landed: bool) -> None:
    """After a change closes: re-verify overlapping changes on top of it if it landed, and
    hand its resources to the earliest waiters."""
    for other_id in tuple(run.state.changes):
        other = run.state.changes.get(other_id)
        if other is None:
            continue
        if landed and _overlaps(other.claims, closed.claims):
            moved = ev.ChangeUpdated(
                base_sha=closed.state.head_sha,
                head_sha=other.state.head_sha,
                lockfile_digest=other.state.lockfile_digest,
            )
            _revise(run, other_id, ev.ReviseReason.BASE_MOVED, moved)
        if other_id in run.state.changes:
            _grant_resources_if_free(run, other_id)


# --------------------------------------------------------------------------------------------
# DAG progress


def _context(change: ChangeState) -> dict[str, Any]:
    facts = change.facts
    return {
        "kind": facts.kind,
        "paths": facts.paths,
        "labels": facts.labels,
        "resources": facts.resources,
        "environments": facts.environments,
        "steps": {
            t.contract.step: {"status": t.status.value.lower(), "decision": t.decision or None}
            for t in change.tasks.values()
        },
    }


def _advance(run: _Run, change_id: str) -> None:
    """Offer every pending task whose needs are done (or skip it if its `when` is false);
    close the change as promoted once every task is done."""
    change = run.state.changes.get(change_id)
    if change is None:
        return
    seen = len(run.out)
    for task_id in tuple(change.tasks):
        if len(run.out) != seen:  # decisions since the change was read: read it again
            seen = len(run.out)
            change = run.state.changes[change_id]
        task = change.tasks[task_id]
        if task.status is not TaskStatus.PENDING or not _needs_done(change, task.contract):
            continue
        contract = task.contract
        if contract.when and not evaluate(contract.when, _context(change)):
            run.emit(ev.TaskSkipped(f"condition false: {contract.when}"), change_id, task_id)
            continue
        run.emit(ev.TaskReady(contract.step, contract.capability), change_id, task_id)
        if _is_approval(contract):
            run.emit(
                ev.ApprovalRequested(
                    max(contract.approvals_required, change.policy_approvals),
                    change.state,
                    change.evidence_digest,
                ),
                change_id,
                task_id,
            )
        else:
            _offer(run, change_id, task, OfferReason.READY, 1)
    change = run.state.changes[change_id]
    for task in change.tasks.values():
        if task.status not in DONE:
            return
    _close(run, change_id, Outcome.PROMOTED, "every task done", COORDINATOR.id)


def _needs_done(change: ChangeState, contract: TaskContract) -> bool:
    """Is every task this one needs done (succeeded or skipped)?"""
    tasks = change.tasks
    return all(tasks[need].status in DONE for need in contract.needs)


def _is_approval(contract: TaskContract) -> bool:
    return contract.authority is Authority.HUMAN and contract.approvals_required > 0


def _offer(run: _Run, change_id: str, task: TaskState, reason: OfferReason, attempt: int) -> None:
    change = run.state.changes[change_id]
    contract = change.tasks[task.contract.id].contract
    modes = run.state.policy_modes
    offer = ev.TaskOffered(contract, attempt, task.epoch + 1, reason, change.facts, modes)
    run.emit(offer, change_id, contract.id)


# --------------------------------------------------------------------------------------------
# leases


def _kind_for(authority: Authority) -> ActorKind:
    """The actor kind a task's authority calls for (identity tests: no Enum hashing)."""
    if authority is Authority.AGENT:
        return ActorKind.AGENT
    return ActorKind.HUMAN if authority is Authority.HUMAN else ActorKind.OPS


def _on_lease_requested(run: _Run, event: Event) -> None:
    p: ev.LeaseRequested = event.payload  # type: ignore[assignment]
    found = _live_task(run, event)
    if found is None:
        return
    change, task = found
    contract = task.contract
    holder = event.envelope.actor.id
    if not _scope_covers_contract(run, event, contract):
        return

    denial = _lease_denial(p, event.envelope.actor.kind, change, task)
    if denial is not None:
        reason, detail = denial
        run.emit(ev.LeaseDenied(holder, reason, detail), change.change_id, contract.id)
        return
    run.emit(
        ev.LeaseGranted(
            lease_id=derive_id(event.envelope.event_id, "lease"),
            holder=holder,
            epoch=task.epoch + 1,
            expires_at=run.now + min(run.config.lease_ttl_ms, contract.timeout_ms),
            attempt=task.attempt,
            inputs=contract.inputs,
        ),
        change.change_id,
        contract.id,
    )


def _lease_denial(
    request: ev.LeaseRequested, kind: ActorKind, change: ChangeState, task: TaskState
) -> tuple[ev.DenyReason, str] | None:
    """Why a lease on the task cannot be granted to this request now, or None if it can."""
    contract = task.contract
    status = task.status
    if request.capability != contract.capability:
        return ev.DenyReason.NOT_OFFERED, f"task needs capability {contract.capability!r}"
    if _kind_for(contract.authority) is not kind:
        return ev.DenyReason.WRONG_AUTHORITY, f"task needs a {contract.authority.value} actor"
    if status is TaskStatus.LEASED:
        return ev.DenyReason.ALREADY_LEASED, "another holder has the live lease"
    if status in TERMINAL:
        return ev.DenyReason.TASK_CLOSED, f"task is {status.value}"
    if status is not TaskStatus.OFFERED:
        return ev.DenyReason.NOT_OFFERED, f"task is {status.value}"
    if _waits_for_resources(change, task):
        waiting = ", ".join(change.waiting_for) or "an earlier change"
        return (
            ev.DenyReason.RESOURCE_BUSY,
            f"waiting for {waiting} to release shared resources",
        )
    if contract.gate and (problem := gate_problem(change, task)):
        return ev.DenyReason.GATE_NOT_SATISFIED, problem
    return None


def _scope_covers_contract(run: _Run, event: Event, contract: TaskContract) -> bool:
    scope = event.scope
    if scope is None:  # ops acting without a credential scope may take any task
        return True
    if contract.capability not in scope.capabilities:
        run.reject(
            InputRejection.CAPABILITY_OUT_OF_SCOPE, f"credential lacks {contract.capability!r}"
        )
        return False
    for path in contract.outputs.paths:
        if not _matches_any(path, scope.paths):
            run.reject(InputRejection.PATH_OUT_OF_SCOPE, f"task may touch {path!r}")
            return False
    for env in contract.outputs.environments:
        if env not in scope.environments:
            run.reject(InputRejection.ENVIRONMENT_OUT_OF_SCOPE, f"task deploys to {env!r}")
            return False
    return True


def gate_problem(change: ChangeState, task: TaskState) -> str:
    """Why a promotion task may not start yet (empty when it may): every required ancestor must
    be done and have verified exactly the change's current state (invariant 3)."""
    state = change.state
    if change.policy_decision == PolicyDecision.FAIL.value and change.policy_enforced:
        return "policy decision is FAIL (enforced)"
    for ancestor_id in _ancestors(change, task.contract.id):
        ancestor = change.tasks[ancestor_id]
        if not ancestor.contract.required or ancestor.status is TaskStatus.SKIPPED:
            continue
        if ancestor.status is not TaskStatus.SUCCEEDED:
            return f"{ancestor.contract.step} is {ancestor.status.value}"
        verified = ancestor.verified
        exact = _is_approval(ancestor.contract)
        if verified is None or not verifies(verified, state, exact=exact):
            return f"{ancestor.contract.step} verified a different state than {state.head_sha}"
        if exact and len(set(ancestor.approvers)) < change.policy_approvals:
            return (
                f"{ancestor.contract.step} has {len(set(ancestor.approvers))} distinct "
                f"approval(s); the policy demands {change.policy_approvals}"
            )
    return ""


def verifies(verified: VerifiedState, state: VerifiedState, *, exact: bool = False) -> bool:
    """Does a verification cover the change's state? Approvals must name it exactly; checks
    must match head, base and lockfile, and any artifact or policy revision they report."""
    if exact:
        return verified == state
    return (
        verified.head_sha == state.head_sha
        and verified.base_sha == state.base_sha
        and verified.lockfile_digest == state.lockfile_digest
        and verified.artifact_digest in ("", state.artifact_digest)
        and verified.policy_revision in ("", state.policy_revision)
    )


def _ancestors(change: ChangeState, task_id: str) -> list[str]:
    seen: list[str] = []
    stack = list(change.tasks[task_id].contract.needs)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.append(node)
            stack.extend(change.tasks[node].contract.needs)
    return seen


def _holder_problem(
    event: Event, task: TaskState, lease_id: str, epoch: int
) -> RejectReason | None:
    lease = task.lease
    if lease is None:
        return RejectReason.TASK_CLOSED if task.status in TERMINAL else RejectReason.UNKNOWN_LEASE
    if epoch != lease.epoch:
        return RejectReason.STALE_EPOCH
    if lease_id != lease.lease_id:
        return RejectReason.UNKNOWN_LEASE
    if event.envelope.actor.id != lease.holder:
        return RejectReason.NOT_HOLDER
    return None


def _on_heartbeat(run: _Run, event: Event) -> None:
    p: ev.LeaseHeartbeat = event.payload  # type: ignore[assignment]
    found = _live_task(run, event)
    if found is None:
        return
    change, task = found
    problem = _holder_problem(event, task, p.lease_id, p.epoch)
    if problem is not None:
        holder = event.envelope.actor.id
        run.emit(
            ev.LeaseHeartbeatRejected(p.lease_id, p.epoch, holder, problem),
            change.change_id,
            task.contract.id,
        )
        return
    lease = task.lease
    assert lease is not None
    expires = min(run.now + run.config.lease_ttl_ms, lease.deadline)
    if expires <= lease.expires_at:
        return  # a late or duplicated heartbeat, or the task's deadline: nothing to extend
    run.emit(
        ev.LeaseExtended(lease.lease_id, lease.epoch, expires), change.change_id, task.contract.id
    )


def _on_released(run: _Run, event: Event) -> None:
    p: ev.LeaseReleased = event.payload  # type: ignore[assignment]
    found = _live_task(run, event)
    if found is None:
        return
    change, task = found
    problem = _holder_problem(event, task, p.lease_id, p.epoch)
    if problem is not None:
        run.reject(InputRejection.STALE_LEASE, f"release refused: {problem.value}")
        return
    lease = task.lease
    assert lease is not None
    run.emit(
        ev.LeaseReturned(lease.lease_id, lease.epoch, lease.holder),
        change.change_id,
        task.contract.id,
    )
    _offer(
        run,
        change.change_id,
        run.state.changes[change.change_id].tasks[task.contract.id],
        OfferReason.RELEASED,
        task.attempt,
    )


def _on_credential_revoked(run: _Run, event: Event) -> None:
    p: ev.CredentialRevoked = event.payload  # type: ignore[assignment]
    for change_id in tuple(run.state.changes):
        for task in tuple(run.state.changes[change_id].tasks.values()):
            lease = task.lease
            # only leases granted under the revoked credential (at or before revocation);
            # a replayed revocation must not touch leases granted to a newer credential
            if lease is not None and lease.holder == p.actor_id and lease.granted_at <= run.now:
                _revoke(run, change_id, task, RevokeReason.CREDENTIAL_REVOKED)
                current = run.state.changes[change_id].tasks[task.contract.id]
                _offer(run, change_id, current, OfferReason.REVOKED, task.attempt + 1)


def _on_tick(run: _Run, _event: Event) -> None:
    now = run.now
    lapsed_before = now - run.config.offer_timeout_ms  # offers made then or earlier lapsed
    for change_id in tuple(run.state.changes):
        change = run.state.changes.get(change_id)
        if change is None:
            continue
        seen = len(run.out)
        for task_id in tuple(change.tasks):
            if len(run.out) != seen:  # decisions since the change was read: read it again
                seen = len(run.out)
                change = run.state.changes.get(change_id)
                if change is None:
                    break
            task = change.tasks[task_id]
            lease = task.lease
            status = task.status
            if lease is not None and lease.expires_at <= now:
                _expire(run, change_id, task)
            elif status is TaskStatus.RETRY_WAIT and (task.retry_due or 0) <= now:
                _offer(run, change_id, task, OfferReason.RETRY, task.attempt + 1)
            elif (
                status is TaskStatus.OFFERED
                and task.offered_at <= lapsed_before
                and not _waits_for_resources(change, task)
            ):
                _offer(run, change_id, task, OfferReason.READY, task.attempt)
            elif status is TaskStatus.AWAITING_APPROVAL:
                _approval_timeout(run, change_id, task)


def _waits_for_resources(change: ChangeState, task: TaskState) -> bool:
    """A gated task waiting for its change's resources: it is offered again when they are
    granted, not when its offer lapses."""
    return task.contract.gate and bool(change.claims) and not change.holds


def _approval_timeout(run: _Run, change_id: str, task: TaskState) -> None:
    """An approval not given within the task's timeout goes to the escalation group; one not
    given within a second timeout (or with no group to ask) blocks the change."""
    contract = task.contract
    if task.requested_at <= 0:
        return  # requested before timeouts were recorded: no time to measure from
    if task.escalated_to:
        if run.now < task.escalated_at + contract.timeout_ms:
            return
        reason = (
            f"{contract.step} not approved within {contract.timeout_ms} ms "
            f"after escalation to {task.escalated_to}"
        )
        _close(run, change_id, Outcome.BLOCKED, f"approval timed out: {reason}", contract.id)
        return
    if run.now < task.requested_at + contract.timeout_ms:
        return
    if not contract.escalate_to:
        reason = f"{contract.step} not approved within {contract.timeout_ms} ms"
        _close(run, change_id, Outcome.BLOCKED, f"approval timed out: {reason}", contract.id)
        return
    run.emit(
        ev.EscalationRaised(
            f"{contract.step} not approved within {contract.timeout_ms} ms; "
            f"escalated to reviewer group {contract.escalate_to}",
            ev.Severity.WARNING,
            contract.id,
            contract.escalate_to,
        ),
        change_id,
        contract.id,
    )


def _expire(run: _Run, change_id: str, task: TaskState) -> None:
    lease = task.lease
    assert lease is not None
    contract = task.contract
    run.emit(ev.LeaseExpired(lease.lease_id, lease.epoch, lease.holder), change_id, contract.id)
    _compensate(run, change_id, contract, lease, "lease expired without a result")
    if task.attempt >= contract.max_attempts:
        _dead_letter(run, change_id, task, lease, "lease expired on the last attempt")
    else:
        current = run.state.changes[change_id].tasks[contract.id]
        _offer(run, change_id, current, OfferReason.EXPIRED, task.attempt + 1)


# --------------------------------------------------------------------------------------------
# results


def _stale_result(
    run: _Run,
    change_id: str,
    task: TaskState,
    lease_id: str,
    epoch: int,
    reason: RejectReason,
    detail: str = "",
) -> None:
    holder = run.cause.envelope.actor.id
    run.emit(
        ev.ResultRejected(lease_id, epoch, holder, reason, detail), change_id, task.contract.id
    )
    stale = Lease(lease_id, holder, epoch, 0, 0, task.attempt, ())
    _compensate(run, change_id, task.contract, stale, f"result rejected: {reason.value}")


def _on_task_succeeded(run: _Run, event: Event) -> None:
    p: ev.TaskSucceeded = event.payload  # type: ignore[assignment]
    found = _live_task(run, event)
    if found is None:
        return
    change, task = found
    change_id, contract = change.change_id, task.contract
    problem = _holder_problem(event, task, p.lease_id, p.epoch)
    lease = task.lease
    if (
        problem is None
        and lease is not None
        and (p.inputs != lease.inputs or lease.inputs != contract.inputs)
    ):
        problem = RejectReason.INPUTS_CHANGED
    if problem is not None:
        _stale_result(run, change_id, task, p.lease_id, p.epoch, problem)
        return
    assert lease is not None
    violation = _out_of_bounds(contract, event.scope, p.touched)
    if violation is not None:
        _stale_result(run, change_id, task, p.lease_id, p.epoch, *violation)
        return
    verified = p.verified or VerifiedState(
        change.state.head_sha, change.state.base_sha, change.state.lockfile_digest
    )
    if p.policy is not None and not verified.policy_revision:
        verified = VerifiedState(
            verified.head_sha,
            verified.base_sha,
            verified.lockfile_digest,
            verified.artifact_digest,
            p.policy.policy_revision,
        )
    mismatch = _state_mismatch(change.state, verified)
    if mismatch:
        _stale_result(
            run, change_id, task, p.lease_id, p.epoch, RejectReason.STATE_MISMATCH, mismatch
        )
        return
    if contract.capability == "policy" and p.policy is None:
        _stale_result(
            run,
            change_id,
            task,
            p.lease_id,
            p.epoch,
            RejectReason.MISSING_OUTCOME,
            "a policy step must report its decision",
        )
        return
    run.emit(
        ev.TaskCompleted(
            lease.lease_id,
            lease.epoch,
            lease.holder,
            lease.attempt,
            lease.inputs,
            p.touched,
            p.artifacts,
            verified,
        ),
        change_id,
        contract.id,
    )
    if p.policy is not None:
        outcome = p.policy
        state = run.state.changes[change_id].state
        run.emit(
            ev.PolicyEvaluated(
                outcome.decision,
                outcome.enforced,
                state,
                outcome.evidence_digest,
                outcome.reasons,
                outcome.required_approvals,
            ),
            change_id,
            contract.id,
        )
        if outcome.decision is PolicyDecision.FAIL and outcome.enforced:
            reasons = "; ".join(outcome.reasons) or "no reasons given"
            _close(run, change_id, Outcome.BLOCKED, f"policy FAIL: {reasons}", contract.id)
            return
    _advance(run, change_id)


def _state_mismatch(state: VerifiedState, verified: VerifiedState) -> str:
    if (verified.head_sha, verified.base_sha, verified.lockfile_digest) != (
        state.head_sha,
        state.base_sha,
        state.lockfile_digest,
    ):
        return (
            f"verified {verified.head_sha}@{verified.base_sha}, "
            f"change is at {state.head_sha}@{state.base_sha}"
        )
    if state.artifact_digest and verified.artifact_digest not in ("", state.artifact_digest):
        return f"artifact {verified.artifact_digest} differs from verified {state.artifact_digest}"
    if state.policy_revision and verified.policy_revision not in ("", state.policy_revision):
        return f"policy revision {verified.policy_revision} differs from {state.policy_revision}"
    return ""


def _out_of_bounds(
    contract: TaskContract, scope: ActorScope | None, touched: ev.Outputs
) -> tuple[RejectReason, str] | None:
    """Least privilege (invariant 8): a result may only touch what the contract declares and
    the credential allows; the first violation found, or None."""
    declared = contract.outputs
    for path in touched.paths:
        if not _matches_any(path, declared.paths):
            return RejectReason.OUTPUT_NOT_DECLARED, f"path {path!r} not declared by the task"
    for resource in touched.resources:
        if not _matches_any(resource, declared.resources):
            return RejectReason.OUTPUT_NOT_DECLARED, f"resource {resource!r} not declared"
    for env in touched.environments:
        if env not in declared.environments:
            return RejectReason.OUTPUT_NOT_DECLARED, f"environment {env!r} not declared"
    if scope is None:
        return None
    for path in touched.paths:
        if not _matches_any(path, scope.paths):
            return RejectReason.PATH_OUT_OF_SCOPE, f"path {path!r} outside credential"
    for env in touched.environments:
        if env not in scope.environments:
            return RejectReason.ENVIRONMENT_OUT_OF_SCOPE, f"environment {env!r} outside credential"
    return None


def _on_task_failed(run: _Run, event: Event) -> None:
    p: ev.TaskFailed = event.payload  # type: ignore[assignment]
    found = _live_task(run, event)
    if found is None:
        return
    change, task = found
    problem = _holder_problem(event, task, p.lease_id, p.epoch)
    if problem is not None:
        _stale_result(run, change.change_id, task, p.lease_id, p.epoch, problem)
        return
    lease = task.lease
    assert lease is not None
    contract = task.contract
    if p.retryable and task.attempt < contract.max_attempts:
        delay = backoff_delay(contract.backoff, task.attempt, event.envelope.event_id)
        run.emit(
            ev.RetryScheduled(
                lease.lease_id,
                lease.epoch,
                task.attempt,
                task.attempt + 1,
                run.now + delay,
                delay,
                p.error,
            ),
            change.change_id,
            contract.id,
        )
    else:
        _dead_letter(run, change.change_id, task, lease, p.error)


def _dead_letter(run: _Run, change_id: str, task: TaskState, lease: Lease, error: str) -> None:
    contract = task.contract
    run.emit(
        ev.TaskDeadLettered(lease.lease_id, lease.epoch, task.attempt, error),
        change_id,
        contract.id,
    )
    run.emit(
        ev.EscalationRaised(
            f"{contract.step} failed after {task.attempt} attempt(s): {error}",
            ev.Severity.CRITICAL,
            contract.id,
        ),
        change_id,
        contract.id,
    )
    if contract.compensation:
        _compensate(run, change_id, contract, lease, "task dead-lettered")
    _close(run, change_id, Outcome.FAILED, f"{contract.step} dead-lettered: {error}", contract.id)


# --------------------------------------------------------------------------------------------
# approvals


def _approval_task(
    run: _Run, event: Event, state: VerifiedState, evidence: str
) -> tuple[ChangeState, TaskState] | None:
    found = _live_task(run, event)
    if found is None:
        return None
    change, task = found
    scope = event.scope
    actor = event.envelope.actor.id
    if not _is_approval(task.contract) or task.status is not TaskStatus.AWAITING_APPROVAL:
        run.reject(InputRejection.NOT_AWAITING_APPROVAL, f"task is {task.status.value}")
        return None
    if scope is None or not _may_review(scope, task):
        wanted = repr(REVIEW_CAPABILITY)
        if task.escalated_to:
            wanted += f" or {reviewer_group_capability(task.escalated_to)!r}"
        run.reject(InputRejection.NOT_A_REVIEWER, f"credential lacks {wanted}")
        return None
    if actor == change.submitted_by:
        run.reject(InputRejection.NOT_A_REVIEWER, "authors cannot approve their own change")
        return None
    if state != change.state or evidence != task.evidence_digest:
        run.reject(
            InputRejection.STALE_APPROVAL,
            f"signed {state.head_sha}, change is at {change.state.head_sha}",
        )
        return None
    return change, task


def _may_review(scope: ev.ActorScope, task: TaskState) -> bool:
    """Reviewers may approve; once escalated, so may the members of the escalation group."""
    if REVIEW_CAPABILITY in scope.capabilities:
        return True
    group = task.escalated_to
    return bool(group) and reviewer_group_capability(group) in scope.capabilities


def approvals_needed(task: TaskState) -> int:
    """Distinct signatures an approval task needs: the template's count or what the policy
    demanded when the approval was requested, whichever is more."""
    return max(task.approvals_needed, task.contract.approvals_required)


def _on_approval_signed(run: _Run, event: Event) -> None:
    p: ev.ApprovalSigned = event.payload  # type: ignore[assignment]
    found = _approval_task(run, event, p.state, p.evidence_digest)
    if found is None:
        return
    change, task = found
    approver = event.envelope.actor.id
    if approver in task.approvers:
        run.reject(InputRejection.DUPLICATE_APPROVAL, f"{approver} already approved")
        return
    contract = task.contract
    count = len(task.approvers) + 1
    needed = approvals_needed(task)
    run.emit(
        ev.ApprovalAccepted(approver, count, needed, p.state, p.evidence_digest),
        change.change_id,
        contract.id,
    )
    if count < needed:
        return
    approvers = (*task.approvers, approver)
    run.emit(
        ev.TaskCompleted(
            "",
            task.epoch,
            ",".join(approvers),
            task.attempt,
            contract.inputs,
            ev.Outputs(),
            (),
            p.state,
        ),
        change.change_id,
        contract.id,
    )
    _advance(run, change.change_id)


def _on_approval_rejected(run: _Run, event: Event) -> None:
    p: ev.ApprovalRejected = event.payload  # type: ignore[assignment]
    found = _approval_task(run, event, p.state, p.evidence_digest)
    if found is None:
        return
    change, _task = found
    reviewer = event.envelope.actor.id
    reason = f"approval rejected by {reviewer}: {p.comment or 'no comment'}"
    _close(run, change.change_id, Outcome.BLOCKED, reason, reviewer)


def _on_policy_mode_changed(run: _Run, event: Event) -> None:
    """An ops switch (the kind check admitted only ops) becomes the repository's mode, which
    every later offer carries to the policy agent."""
    p: ev.PolicyModeChanged = event.payload  # type: ignore[assignment]
    set_by = event.envelope.actor.id
    run.emit(ev.PolicyModeSet(p.policy, p.enforced, p.reason, set_by), None)


HANDLERS: Final[dict[type, Handler]] = {
    ev.ChangeRequested: _on_change_requested,
    ev.ChangeUpdated: _on_change_updated,
    ev.ChangeCancelled: _on_change_cancelled,
    ev.LeaseRequested: _on_lease_requested,
    ev.LeaseHeartbeat: _on_heartbeat,
    ev.LeaseReleased: _on_released,
    ev.TaskSucceeded: _on_task_succeeded,
    ev.TaskFailed: _on_task_failed,
    ev.ApprovalSigned: _on_approval_signed,
    ev.ApprovalRejected: _on_approval_rejected,
    ev.CredentialRevoked: _on_credential_revoked,
    ev.PolicyModeChanged: _on_policy_mode_changed,
    ev.Tick: _on_tick,
}
