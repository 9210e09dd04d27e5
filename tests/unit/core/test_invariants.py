"""Hypothesis state machines: random, adversarial traffic against the decider, with every
invariant of DESIGN.md checked after every step on the decisions it produced.

One machine drives the traffic; `DecisionLog` re-checks the emitted decisions independently of
the decider's own code, and each invariant has a test named after it that runs the machine
with that check switched on (all checks run in every test; the name says what it proves).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from core_world import ALL_CAPS, World, agent_scope
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sdlcflow.core import events as ev
from sdlcflow.core.codec import canonical_json
from sdlcflow.core.events import Actor, ActorKind, Event
from sdlcflow.core.fold import evolve
from sdlcflow.core.state import DONE, ChangeState, RepoState, TaskStatus

CHANGE_IDS = ("c1", "c2", "c3")
AGENTS = ("a1", "a2", "a3")
REVIEWERS = ("alice", "bob")
HEADS = ("h1", "h2", "h3")
PATHS = (("src/app.py",), ("src/auth.py",), ("docs/readme.md",))
TEMPLATES = ("code-change", "deployment", "dependency-upgrade")
DECISIONS = tuple(ev.PolicyDecision)
ACCEPTING = frozenset(
    {"LeaseGranted", "LeaseExtended", "TaskCompleted", "ApprovalAccepted", "LeaseReturned"}
)
REPEATABLE_REFUSALS = frozenset({"EventRejected", "LeaseHeartbeatRejected"})
REJECTIONS = frozenset({"EventRejected", "LeaseDenied", "ResultRejected", "LeaseHeartbeatRejected"})


def _covers(verified: ev.VerifiedState, state: ev.VerifiedState, exact: bool) -> bool:
    if exact:
        return verified == state
    same_inputs = (verified.head_sha, verified.base_sha, verified.lockfile_digest) == (
        state.head_sha,
        state.base_sha,
        state.lockfile_digest,
    )
    return (
        same_inputs
        and verified.artifact_digest in ("", state.artifact_digest)
        and verified.policy_revision in ("", state.policy_revision)
    )


def _ancestors(change: ChangeState, task_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(change.tasks[task_id].contract.needs)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(change.tasks[node].contract.needs)
    return seen


def _unverified(change: ChangeState, task_ids: set[str]) -> list[str]:
    """Required tasks among `task_ids` that are not done or verified another state."""
    bad = []
    for task_id in task_ids:
        task = change.tasks[task_id]
        if not task.contract.required or task.status is TaskStatus.SKIPPED:
            continue
        approval = task.contract.authority is ev.Authority.HUMAN
        if (
            task.status is not TaskStatus.SUCCEEDED
            or task.verified is None
            or not _covers(task.verified, change.state, approval)
        ):
            bad.append(task_id)
    return bad


class DecisionLog:
    """Re-folds the decisions and checks each against the state just before it."""

    def __init__(self, checks: frozenset[str]) -> None:
        self.checks = checks
        self.state = RepoState()
        self.live: dict[str, tuple[str, int, tuple[ev.ArtifactRef, ...]]] = {}
        self.last_epoch: dict[str, int] = {}
        self.completed: set[tuple[str, int]] = set()
        self.revision: dict[str, int] = {}

    def check_batch(self, cause: Event, out: Sequence[Event]) -> None:
        for event in out:
            assert event.envelope.causation_id == cause.envelope.event_id
            self._check(event)
            self.state = evolve(self.state, event)
        if "failure" in self.checks and out:
            self._check_failures_end_somewhere(cause, out)

    def _check(self, event: Event) -> None:
        kind, task_id, p = event.type, event.envelope.task_id or "", event.payload
        change = self.state.changes.get(event.envelope.change_id or "")
        if kind == "LeaseGranted":
            assert isinstance(p, ev.LeaseGranted)
            if "lease" in self.checks:
                # invariant 1: at most one live lease per task, epochs only grow
                assert task_id not in self.live, f"second live lease on {task_id}"
                assert p.epoch > self.last_epoch.get(task_id, 0)
            self.live[task_id] = (p.lease_id, p.epoch, p.inputs)
            self.last_epoch[task_id] = p.epoch
            assert change is not None
            if "promotion" in self.checks and change.tasks[task_id].contract.gate:
                # invariant 3: a promotion lease only over fully verified state
                assert not _unverified(change, _ancestors(change, task_id))
                assert change.holds or not change.claims
        elif kind in ("LeaseReturned", "LeaseExpired", "LeaseRevoked"):
            lease_id = getattr(p, "lease_id")  # noqa: B009 - three payload types
            assert self.live.pop(task_id)[0] == lease_id
        elif kind in ("RetryScheduled", "TaskDeadLettered"):
            lease_id = getattr(p, "lease_id")  # noqa: B009
            if task_id in self.live:
                assert self.live.pop(task_id)[0] == lease_id
        elif kind == "TaskCompleted":
            assert isinstance(p, ev.TaskCompleted) and change is not None
            if p.lease_id:
                lease_id, epoch, inputs = self.live.pop(task_id)
                if "lease" in self.checks:
                    # invariant 1: accepted results carry the current epoch and lease
                    assert (p.lease_id, p.epoch) == (lease_id, epoch)
                if "completion" in self.checks:
                    # invariant 2: the completion is bound to the leased inputs
                    assert p.inputs == inputs == change.tasks[task_id].contract.inputs
            key = (task_id, self.revision.get(change.change_id, 0))
            if "completion" in self.checks:
                assert key not in self.completed, f"{task_id} completed twice"
            self.completed.add(key)
        elif kind == "ChangeRevised":
            assert isinstance(p, ev.ChangeRevised) and change is not None
            assert not [t for t in change.tasks if t in self.live], "revised with live leases"
            self.revision[change.change_id] = p.revision
        elif kind == "TaskCancelled":
            assert task_id not in self.live
        elif kind == "ChangePromoted" and "promotion" in self.checks:
            assert change is not None
            assert all(t.status in DONE for t in change.tasks.values())
            assert not _unverified(change, set(change.tasks)), "promoted unverified state"
            assert isinstance(p, ev.ChangePromoted) and p.state == change.state

    def _check_failures_end_somewhere(self, cause: Event, out: Sequence[Event]) -> None:
        """Invariant 4: a failure or expiry ends in a retry, a re-offer, or dead letter and an
        escalation."""
        kinds = [e.type for e in out]
        if cause.type == "TaskFailed" and not REJECTIONS & set(kinds):
            assert "RetryScheduled" in kinds or (
                "TaskDeadLettered" in kinds and "EscalationRaised" in kinds
            ), kinds
        for index, event in enumerate(out):
            after = out[index + 1 :]
            same_task = [e.type for e in after if e.envelope.task_id == event.envelope.task_id]
            if event.type == "LeaseExpired":
                assert "TaskOffered" in same_task or "TaskDeadLettered" in same_task
            if event.type == "TaskDeadLettered":
                assert "EscalationRaised" in same_task


class CoordinatorMachine(RuleBasedStateMachine):
    """Producers, agents, reviewers, ops and the clock, all misbehaving now and then."""

    checks: frozenset[str] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.checker = DecisionLog(self.checks)

    # -- plumbing -----------------------------------------------------------------------------

    def _feed(self, event: Event) -> tuple[Event, ...]:
        self.world.now += 1  # events arrive at distinct milliseconds
        given = self.world.state
        snapshot = canonical_json(given) if "untouched" in self.checks else b""
        out = self.world.feed(event)
        self.checker.check_batch(event, out)
        if "untouched" in self.checks:
            self._check_inputs_untouched(given, snapshot, out)
        return out

    def _check_inputs_untouched(
        self, given: RepoState, snapshot: bytes, out: Sequence[Event]
    ) -> None:
        """`handle` and `evolve` write only into objects they built themselves (the hot path
        fills fresh copies in place): every state they were given stays as it was."""
        assert canonical_json(given) == snapshot
        states = [given]
        for decision in out:
            states.append(evolve(states[-1], decision))
        assert states[-1] == self.world.state
        snapshots = [canonical_json(state) for state in states]
        for state, decision in zip(states, out, strict=False):
            evolve(state, decision)  # once more: the result is dropped, the input must not move
        assert [canonical_json(state) for state in states] == snapshots

    def _live_task(self, data: st.DataObject) -> tuple[str, str] | None:
        tasks = [
            (cid, tid) for cid, change in self.world.state.changes.items() for tid in change.tasks
        ]
        return data.draw(st.sampled_from(tasks)) if tasks else None

    def _agent_event(
        self, payload: ev.Payload, agent: str, cid: str, tid: str, *, scope_ok: bool = True
    ) -> tuple[Event, ...]:
        scope = agent_scope(agent, ALL_CAPS) if scope_ok else None
        return self._feed(
            self.world.event(
                payload, Actor(ActorKind.AGENT, agent), change_id=cid, task_id=tid, scope=scope
            )
        )

    # -- producers ----------------------------------------------------------------------------

    @rule(
        cid=st.sampled_from(CHANGE_IDS),
        template=st.sampled_from(TEMPLATES),
        head=st.sampled_from(HEADS),
        paths=st.sampled_from(PATHS),
        labels=st.sampled_from(((), ("major",))),
    )
    def request_change(
        self, cid: str, template: str, head: str, paths: tuple[str, ...], labels: tuple[str, ...]
    ) -> None:
        if cid in self.world.state.changes and head != "h3":
            return  # re-requests of a live change (= head moves) stay rare
        payload = ev.ChangeRequested(
            kind="code",
            template=template,
            base_sha="b0",
            head_sha=head,
            lockfile_digest="l1",
            paths=paths,
            labels=labels,
            environments=("prod",),
        )
        self._feed(self.world.event(payload, Actor(ActorKind.PRODUCER, "hook"), change_id=cid))

    @rule(cid=st.sampled_from(CHANGE_IDS), head=st.sampled_from(HEADS), now=st.integers(0, 3))
    def move_head(self, cid: str, head: str, now: int) -> None:
        if now:
            return  # keep churn low so changes get far enough to promote
        payload = ev.ChangeUpdated("b0", head, "l1")
        self._feed(self.world.event(payload, Actor(ActorKind.PRODUCER, "hook"), change_id=cid))

    @rule(cid=st.sampled_from(CHANGE_IDS), now=st.integers(0, 3))
    def cancel_change(self, cid: str, now: int) -> None:
        if now:
            return
        payload = ev.ChangeCancelled("changed my mind")
        self._feed(
            self.world.event(
                payload,
                Actor(ActorKind.HUMAN, "carol"),
                change_id=cid,
                scope=agent_scope("carol", (), kind=ActorKind.HUMAN),
            )
        )

    # -- agents -------------------------------------------------------------------------------

    @rule(data=st.data(), agent=st.sampled_from(AGENTS))
    def request_lease(self, data: st.DataObject, agent: str) -> None:
        picked = self._live_task(data)
        if picked is None:
            return
        cid, tid = picked
        capability = self.world.state.changes[cid].tasks[tid].contract.capability
        self._agent_event(ev.LeaseRequested(capability), agent, cid, tid)

    def _lease_args(self, data: st.DataObject) -> tuple[str, str, str, str, int] | None:
        """A lease to act on: usually the live one, sometimes a stale or forged one."""
        leased = [
            (cid, tid)
            for cid, change in self.world.state.changes.items()
            for tid, task in change.tasks.items()
            if task.lease is not None
        ]
        picked = (
            data.draw(st.sampled_from(leased))
            if leased and data.draw(st.integers(0, 4))
            else self._live_task(data)
        )
        if picked is None:
            return None
        cid, tid = picked
        lease = self.world.state.changes[cid].tasks[tid].lease
        if lease is not None and data.draw(st.integers(0, 4)) > 0:
            return cid, tid, lease.holder, lease.lease_id, lease.epoch
        agent = data.draw(st.sampled_from(AGENTS))
        return (
            cid,
            tid,
            agent,
            data.draw(st.sampled_from(("old", "forged"))),
            data.draw(st.integers(0, 3)),
        )

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        args = self._lease_args(data)
        if args is not None:
            cid, tid, agent, lease_id, epoch = args
            self._agent_event(ev.LeaseHeartbeat(lease_id, epoch), agent, cid, tid)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        args = self._lease_args(data)
        if args is not None:
            cid, tid, agent, lease_id, epoch = args
            self._agent_event(ev.LeaseReleased(lease_id, epoch), agent, cid, tid)

    @rule(data=st.data(), decision=st.sampled_from(DECISIONS), enforced=st.booleans())
    def succeed(self, data: st.DataObject, decision: ev.PolicyDecision, enforced: bool) -> None:
        args = self._lease_args(data)
        if args is None:
            return
        cid, tid, agent, lease_id, epoch = args
        change = self.world.state.changes[cid]
        contract = change.tasks[tid].contract
        policy = None
        if contract.capability == "policy":
            policy = ev.PolicyOutcome(decision, enforced, "pol-1", f"ev-{decision.value}")
        stale_view = data.draw(st.integers(0, 9)) == 0
        state = change.state
        verified = ev.VerifiedState(
            "h0" if stale_view else state.head_sha,
            state.base_sha,
            state.lockfile_digest,
            "art-1" if contract.capability == "test" else "",
        )
        touched = ev.Outputs(
            paths=contract.outputs.paths, environments=contract.outputs.environments
        )
        if data.draw(st.integers(0, 9)) == 0:
            touched = ev.Outputs(paths=("etc/passwd",))
        payload = ev.TaskSucceeded(lease_id, epoch, contract.inputs, touched, (), verified, policy)
        self._agent_event(payload, agent, cid, tid)

    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        args = self._lease_args(data)
        if args is not None:
            cid, tid, agent, lease_id, epoch = args
            self._agent_event(ev.TaskFailed(lease_id, epoch, "flaky", retryable), agent, cid, tid)

    @rule(data=st.data(), reviewer=st.sampled_from(REVIEWERS), honest=st.booleans())
    def approve(self, data: st.DataObject, reviewer: str, honest: bool) -> None:
        picked = self._live_task(data)
        if picked is None:
            return
        cid, tid = picked
        change = self.world.state.changes[cid]
        state = change.state if honest else ev.VerifiedState("h0")
        payload = ev.ApprovalSigned(state, change.tasks[tid].evidence_digest)
        scope = agent_scope(reviewer, ("approval",), kind=ActorKind.HUMAN)
        event = self.world.event(
            payload, Actor(ActorKind.HUMAN, reviewer), change_id=cid, task_id=tid, scope=scope
        )
        self._feed(event)

    @rule(
        data=st.data(),
        decision=st.sampled_from((*DECISIONS, ev.PolicyDecision.PASS, ev.PolicyDecision.PASS)),
    )
    def diligent_agent(self, data: st.DataObject, decision: ev.PolicyDecision) -> None:
        """Drives changes forward: honest reviewers sign, honest agents lease and succeed."""
        for _ in range(6):
            self._diligent_step(data, decision)

    def _diligent_step(self, data: st.DataObject, decision: ev.PolicyDecision) -> None:
        changes = self.world.state.changes
        waiting = [
            (cid, tid)
            for cid, change in changes.items()
            for tid, task in change.tasks.items()
            if task.status in (TaskStatus.OFFERED, TaskStatus.AWAITING_APPROVAL)
        ]
        if not waiting:
            return
        cid, tid = data.draw(st.sampled_from(waiting))
        task = changes[cid].tasks[tid]
        if task.status is TaskStatus.AWAITING_APPROVAL:
            reviewer = data.draw(st.sampled_from(REVIEWERS))
            payload = ev.ApprovalSigned(changes[cid].state, task.evidence_digest)
            scope = agent_scope(reviewer, ("approval",), kind=ActorKind.HUMAN)
            actor = Actor(ActorKind.HUMAN, reviewer)
            self._feed(self.world.event(payload, actor, change_id=cid, task_id=tid, scope=scope))
            return
        agent = "diligent"
        contract = task.contract
        granted = self._agent_event(ev.LeaseRequested(contract.capability), agent, cid, tid)
        if not any(e.type == "LeaseGranted" for e in granted):
            return
        change = self.world.state.changes[cid]
        lease = change.tasks[tid].lease
        assert lease is not None
        fate = data.draw(st.integers(0, 9))
        if fate == 0:
            return  # the agent crashes holding the lease; only expiry can free the task
        if fate == 1:
            failure = ev.TaskFailed(lease.lease_id, lease.epoch, "flaky", True)
            self._agent_event(failure, agent, cid, tid)
            return
        state = change.state
        verified = ev.VerifiedState(
            state.head_sha,
            state.base_sha,
            state.lockfile_digest,
            "art-1" if contract.capability == "test" else "",
        )
        policy = None
        if contract.capability == "policy":
            policy = ev.PolicyOutcome(decision, True, "pol-1", f"ev-{decision.value}")
        touched = ev.Outputs(
            paths=contract.outputs.paths, environments=contract.outputs.environments
        )
        payload = ev.TaskSucceeded(
            lease.lease_id, lease.epoch, lease.inputs, touched, (), verified, policy
        )
        self._agent_event(payload, agent, cid, tid)

    # -- ops and the clock --------------------------------------------------------------------

    @rule(ms=st.sampled_from((0, 1, 5_000, 31_000, 120_000)))
    def tick(self, ms: int) -> None:
        self.world.now += ms
        self._feed(self.world.event(ev.Tick(), Actor(ActorKind.COORDINATOR, "timer")))

    @rule(agent=st.sampled_from(AGENTS), now=st.integers(0, 3))
    def revoke_credential(self, agent: str, now: int) -> None:
        if now:
            return
        self._feed(self.world.event(ev.CredentialRevoked(agent), Actor(ActorKind.OPS, "ops")))

    # -- adversaries --------------------------------------------------------------------------

    @rule(data=st.data())
    def replay_an_earlier_input(self, data: st.DataObject) -> None:
        """Invariant 6: a duplicated, reordered or replayed input changes nothing."""
        if not self.world.inputs:
            return
        old = data.draw(st.sampled_from(self.world.inputs))
        before = self.world.state
        out = self._feed(old)
        if "idempotency" in self.checks:
            assert self.world.state == before, f"replaying {old.type} changed the state"
            # a refusal may be repeated (refusals change no state), nothing else may
            assert {e.type for e in out} <= REPEATABLE_REFUSALS, [e.type for e in out]

    @rule(data=st.data(), flaw=st.sampled_from(("none", "repo", "expired", "caps", "who")))
    def out_of_scope_actor(self, data: st.DataObject, flaw: str) -> None:
        """Invariant 8: an actor outside its scope gets nothing accepted."""
        picked = self._live_task(data)
        if picked is None:
            return
        cid, tid = picked
        contract = self.world.state.changes[cid].tasks[tid].contract
        scopes = {
            "none": None,
            "repo": agent_scope("a1", ALL_CAPS, repos=("elsewhere/*",)),
            "expired": agent_scope("a1", ALL_CAPS, expires_at=self.world.now),
            "caps": agent_scope("a1", tuple(c for c in ALL_CAPS if c != contract.capability)),
            "who": agent_scope("a2", ALL_CAPS),
        }
        event = self.world.event(
            ev.LeaseRequested(contract.capability),
            Actor(ActorKind.AGENT, "a1"),
            change_id=cid,
            task_id=tid,
            scope=scopes[flaw],
        )
        out = self._feed(event)
        if "scope" in self.checks:
            assert not ACCEPTING & {e.type for e in out}
            assert [e.type for e in out] == ["EventRejected"]

    # -- invariants over state ----------------------------------------------------------------

    @invariant()
    def replay_of_the_decision_log_rebuilds_identical_state(self) -> None:
        """Invariant 5."""
        if "replay" in self.checks:
            assert self.checker.state == self.world.state

    @invariant()
    def no_live_change_holds_a_dead_or_unscheduled_task(self) -> None:
        """Invariant 4 over state: dead tasks close their change; waits have due times."""
        if "failure" not in self.checks:
            return
        for change in self.world.state.changes.values():
            for task in change.tasks.values():
                assert task.status is not TaskStatus.DEAD
                if task.status is TaskStatus.RETRY_WAIT:
                    assert task.retry_due is not None
                if task.status is TaskStatus.LEASED:
                    assert task.lease is not None

    @invariant()
    def resources_are_held_by_live_changes_only(self) -> None:
        """Promotions are serialised: overlapping changes never hold resources together."""
        if "promotion" not in self.checks:
            return
        state = self.world.state
        assert set(state.holders.values()) <= set(state.changes)
        for resource, holder in state.holders.items():
            assert resource in state.changes[holder].claims
        holding = [c for c in state.changes.values() if c.holds]
        for i, first in enumerate(holding):
            for second in holding[i + 1 :]:
                assert not _overlap(first.claims, second.claims)


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return any(
        x == y or (x[:4] == y[:4] and (fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x)))
        for x in a
        for y in b
    )


_SETTINGS = settings(
    max_examples=35,
    stateful_step_count=70,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _machine(name: str, checks: set[str]) -> type[CoordinatorMachine]:
    machine = type(name, (CoordinatorMachine,), {"checks": frozenset(checks)})
    machine.TestCase.settings = _SETTINGS
    return machine


AtMostOneLiveLease = _machine("AtMostOneLiveLease", {"lease"})
NoDoubleCompletion = _machine("NoDoubleCompletion", {"completion"})
NoPromotionOfUnverifiedState = _machine("NoPromotionOfUnverifiedState", {"promotion"})
EveryFailureEndsSomewhere = _machine("EveryFailureEndsSomewhere", {"failure"})
ReplayRebuildsState = _machine("ReplayRebuildsState", {"replay"})
DuplicatesChangeNothing = _machine("DuplicatesChangeNothing", {"idempotency"})
ActorsStayInScope = _machine("ActorsStayInScope", {"scope"})
GivenStatesStayUntouched = _machine("GivenStatesStayUntouched", {"untouched"})

# pytest collects these: one test per invariant of DESIGN.md
TestInvariant1AtMostOneLiveLeaseAndCurrentEpoch = AtMostOneLiveLease.TestCase
TestInvariant2NoTaskCompletesTwice = NoDoubleCompletion.TestCase
TestInvariant3NoPromotionOfUnverifiedState = NoPromotionOfUnverifiedState.TestCase
TestInvariant4EveryFailureEndsInRetryOrDeadLetterAndEscalation = EveryFailureEndsSomewhere.TestCase
TestInvariant5ReplayOfTheLogRebuildsIdenticalState = ReplayRebuildsState.TestCase
TestInvariant6DuplicatedReorderedReplayedInputsChangeNothing = DuplicatesChangeNothing.TestCase
TestInvariant8ActorsActOnlyWithinScope = ActorsStayInScope.TestCase
# what the hot path's in-place shortcuts rely on (sdlcflow.core.fold._remember)
TestHandleAndEvolveNeverChangeAStateTheyAreGiven = GivenStatesStayUntouched.TestCase
