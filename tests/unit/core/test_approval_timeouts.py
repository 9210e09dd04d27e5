"""Approval timeouts, escalation to a second reviewer group, and policy-demanded approvals.

Given a change whose policy said REVIEW, time (Ticks) and reviewers' signatures decide: the
escalation group may approve only after the first timeout, a second timeout blocks the change,
and a policy's `required_approvals` raises the number of distinct signatures the gate needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from core_world import TEMPLATES, World, agent_scope, of_type, types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.core import events as ev
from sdlcflow.core.decider import CoreConfig, approvals_needed, gate_problem
from sdlcflow.core.events import Actor, ActorKind, PolicyDecision
from sdlcflow.core.planner import load_templates
from sdlcflow.core.records import replace

HOUR = 3_600_000
ESCALATING = """
name: escalating
steps:
  - id: policy
    capability: policy
  - id: approval
    capability: approval
    authority: human
    approvals: 1
    needs: [policy]
    when: steps.policy.decision == "REVIEW"
    timeout: 1h
    escalate_to: security-leads
  - id: promote
    capability: promote
    needs: [approval]
    gate: true
"""
NO_GROUP = ESCALATING.replace("name: escalating", "name: no-group").replace(
    "    escalate_to: security-leads\n", ""
)
CONFIG = CoreConfig(
    templates={
        **TEMPLATES,
        **load_templates(
            {"escalating": ("escalating.yaml", ESCALATING), "no-group": ("no-group.yaml", NO_GROUP)}
        ),
    },
    lease_ttl_ms=30_000,
)
LEADS = ev.reviewer_group_capability("security-leads")


def _awaiting(template: str = "escalating", required: int = 0) -> World:
    """A change whose policy said REVIEW (demanding `required` approvals): approval pending."""
    world = World(config=CONFIG)
    world.request("c1", template=template)
    outcome = ev.PolicyOutcome(PolicyDecision.REVIEW, True, "pol-7", "evidence-1", (), required)
    world.run_step("c1", "policy", "policy-bot", policy=outcome)
    assert world.task("c1", "approval").status.value == "AWAITING_APPROVAL"
    return world


def _sign(world: World, reviewer: str, capabilities: tuple[str, ...]) -> tuple[ev.Event, ...]:
    """A reviewer signs what the latest approval request showed (also after the change closed)."""
    request: ev.ApprovalRequested = of_type(world.log, "ApprovalRequested")[-1].payload  # type: ignore[assignment]
    return world.send(
        ev.ApprovalSigned(request.state, request.evidence_digest),
        Actor(ActorKind.HUMAN, reviewer),
        change_id="c1",
        task_id="c1/approval",
        scope=agent_scope(reviewer, capabilities, kind=ActorKind.HUMAN),
    )


class TestApprovalEscalation:
    """An approval not given within the task's timeout goes to the second reviewer group."""

    def test_timeout_raises_an_escalation_naming_the_group_once(self) -> None:
        world = _awaiting()
        assert world.advance(HOUR - 1) == ()
        first = world.advance(1)
        [raised] = of_type(first, "EscalationRaised")
        assert raised.payload == ev.EscalationRaised(
            "approval not approved within 3600000 ms; escalated to reviewer group security-leads",
            ev.Severity.WARNING,
            "c1/approval",
            "security-leads",
        )
        assert world.task("c1", "approval").escalated_to == "security-leads"
        assert world.advance(HOUR // 2) == ()

    def test_group_member_may_approve_only_after_escalation(self) -> None:
        world = _awaiting()
        before = _sign(world, "lead", (LEADS,))
        assert [e.payload.reason for e in of_type(before, "EventRejected")] == [  # type: ignore[union-attr]
            ev.InputRejection.NOT_A_REVIEWER
        ]
        world.advance(HOUR)
        after = _sign(world, "lead", (LEADS,))
        assert "ApprovalAccepted" in types(after)
        assert world.task("c1", "approval").status.value == "SUCCEEDED"

    def test_first_group_still_may_approve_after_escalation(self) -> None:
        world = _awaiting()
        world.advance(HOUR)
        assert "ApprovalAccepted" in types(_sign(world, "alice", ("approval",)))

    def test_second_timeout_blocks_the_change_and_refuses_late_approvals(self) -> None:
        world = _awaiting()
        world.advance(HOUR)
        assert world.advance(HOUR - 1) == ()
        blocked = of_type(world.advance(1), "ChangeBlocked")
        assert len(blocked) == 1
        assert "after escalation to security-leads" in blocked[0].payload.reason  # type: ignore[union-attr]
        assert world.state.closed["c1"] == "BLOCKED"
        late = _sign(world, "lead", (LEADS,))
        assert [e.payload.reason for e in of_type(late, "EventRejected")] == [  # type: ignore[union-attr]
            ev.InputRejection.CHANGE_CLOSED
        ]

    def test_without_a_group_the_first_timeout_blocks(self) -> None:
        world = _awaiting("no-group")
        out = world.advance(HOUR)
        assert "EscalationRaised" not in types(out)
        assert world.state.closed["c1"] == "BLOCKED"

    def test_replaying_the_decisions_rebuilds_the_escalated_state(self) -> None:
        world = _awaiting()
        world.advance(HOUR)
        assert world.replayed() == world.state

    def test_a_new_head_restarts_the_approval_clock_without_the_escalation(self) -> None:
        world = _awaiting()
        world.advance(HOUR)
        world.send(
            ev.ChangeUpdated("b0", "h2", "l1"), world.inputs[0].envelope.actor, change_id="c1"
        )
        world.run_step(
            "c1",
            "policy",
            "policy-bot",
            policy=ev.PolicyOutcome(PolicyDecision.REVIEW, True, "pol-7", "evidence-2"),
        )
        task = world.task("c1", "approval")
        assert (task.escalated_to, task.requested_at) == ("", world.now)
        rejected = _sign(world, "lead", (LEADS,))
        assert "EventRejected" in types(rejected)


class TestPolicyRequiredApprovals:
    """A policy's `required_approvals` reaches the core and the gate counts distinct signatures."""

    def test_policy_evaluated_and_approval_request_carry_the_demand(self) -> None:
        world = _awaiting(required=2)
        [evaluated] = of_type(world.log, "PolicyEvaluated")
        assert evaluated.payload.required_approvals == 2  # type: ignore[union-attr]
        [requested] = of_type(world.log, "ApprovalRequested")
        assert requested.payload.required == 2  # type: ignore[union-attr]

    def test_two_distinct_reviewers_are_needed(self) -> None:
        world = _awaiting(required=2)
        _sign(world, "alice", ("approval",))
        assert world.task("c1", "approval").status.value == "AWAITING_APPROVAL"
        again = _sign(world, "alice", ("approval",))
        assert [e.payload.reason for e in of_type(again, "EventRejected")] == [  # type: ignore[union-attr]
            ev.InputRejection.DUPLICATE_APPROVAL
        ]
        _sign(world, "bob", ("approval",))
        assert world.task("c1", "approval").status.value == "SUCCEEDED"
        world.run_step("c1", "promote", "deployer")
        assert world.state.closed["c1"] == "PROMOTED"

    def test_the_template_count_stands_when_the_policy_asks_for_less(self) -> None:
        world = _awaiting(required=0)
        assert approvals_needed(world.task("c1", "approval")) == 1

    def test_gate_refuses_an_approval_with_fewer_signers_than_the_policy_demands(self) -> None:
        world = _awaiting(required=2)
        _sign(world, "alice", ("approval",))
        _sign(world, "bob", ("approval",))
        change = world.state.changes["c1"]
        promote = change.tasks["c1/promote"]
        assert gate_problem(change, promote) == ""
        stricter = replace(change, policy_approvals=3)
        assert gate_problem(stricter, promote) == (
            "approval has 2 distinct approval(s); the policy demands 3"
        )


@dataclass(frozen=True)
class _Step:
    """One thing that may happen to a pending approval: time passes, or someone signs."""

    advance_ms: int
    signer: str
    group_member: bool


_steps = st.lists(
    st.builds(
        _Step,
        advance_ms=st.integers(0, 2 * HOUR),
        signer=st.sampled_from(["alice", "bob", "carol"]),
        group_member=st.booleans(),
    ),
    max_size=8,
)


class TestApprovalTimeoutProperties:
    """Whatever the order of ticks and signatures, the approval rules hold."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=_steps, required=st.integers(0, 3))
    def test_no_promotion_short_of_the_demand_and_no_block_before_both_timeouts(
        self, steps: list[_Step], required: int
    ) -> None:
        world = _awaiting(required=required)
        requested_at = world.now
        for step in steps:
            if "c1" not in world.state.changes:
                break
            world.advance(step.advance_ms)
            if "c1" not in world.state.changes:
                break
            caps = (LEADS,) if step.group_member else ("approval",)
            _sign(world, step.signer, caps)
            task = world.task("c1", "approval")
            if task.status.value == "SUCCEEDED":
                world.run_step("c1", "promote", "deployer")
        escalations = of_type(world.log, "EscalationRaised")
        assert len(escalations) <= 1
        accepted = {e.payload.approver for e in of_type(world.log, "ApprovalAccepted")}  # type: ignore[union-attr]
        if world.state.closed.get("c1") == "PROMOTED":
            assert len(accepted) >= max(1, required)
        for blocked in of_type(world.log, "ChangeBlocked"):
            assert blocked.envelope.occurred_at >= requested_at + 2 * HOUR
        signed = {e.event_id: e for e in world.inputs}
        for event in of_type(world.log, "ApprovalAccepted"):
            cause = signed[event.envelope.causation_id or ""]
            if cause.scope is not None and "approval" not in cause.scope.capabilities:
                assert escalations
                assert event.envelope.occurred_at >= escalations[0].envelope.occurred_at
        assert world.replayed() == world.state
