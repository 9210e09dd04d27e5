"""DAG progress: fan-out, fan-in, skips, retries with backoff, dead letter, change outcomes."""

from __future__ import annotations

from core_world import World, agent_scope, of_type, types

from sdlcflow.core import events as ev
from sdlcflow.core.decider import backoff_delay, gate_problem, jitter_fraction
from sdlcflow.core.events import Actor, ActorKind

PASS, REVIEW, FAIL = ev.PolicyDecision.PASS, ev.PolicyDecision.REVIEW, ev.PolicyDecision.FAIL


class TestFanOutFanIn:
    """Roots are offered together; a join waits for all its needs."""

    def test_roots_offered_together_and_policy_waits_for_both(self) -> None:
        world = World()
        planned = world.request("c1")
        offered = [e.envelope.task_id for e in of_type(planned, "TaskOffered")]
        assert offered == ["c1/lint", "c1/test"]
        assert "TaskOffered" not in types(world.run_step("c1", "lint"))
        after_test = world.run_step("c1", "test")
        assert [e.envelope.task_id for e in of_type(after_test, "TaskOffered")] == ["c1/policy"]

    def test_approval_is_skipped_when_policy_passes(self) -> None:
        world = World()
        world.request("c1")
        world.run_step("c1", "lint")
        world.run_step("c1", "test")
        out = world.run_step("c1", "policy", policy=world.policy(PASS))
        assert types(out) == [
            "TaskCompleted",
            "PolicyEvaluated",
            "TaskSkipped",
            "TaskReady",
            "TaskOffered",
        ]
        assert out[2].envelope.task_id == "c1/approval"

    def test_change_is_promoted_when_every_task_is_done(self) -> None:
        world = World()
        world.request("c1")
        for step in ("lint", "test"):
            world.run_step("c1", step)
        world.run_step("c1", "policy", policy=world.policy(PASS))
        world.run_step("c1", "merge")
        out = world.run_step("c1", "promote")
        promoted = of_type(out, "ChangePromoted")[0].payload
        assert promoted.environments == ("prod",)
        assert world.state.closed == {"c1": "PROMOTED"}
        assert "c1" not in world.state.changes


class TestRetries:
    """Failures retry with exponential backoff and deterministic jitter, then dead-letter."""

    def test_failure_schedules_retry_and_tick_reoffers(self) -> None:
        world = World()
        world.request("c1")
        world.lease("c1", "lint")
        out = world.fail("c1", "lint")
        retry = of_type(out, "RetryScheduled")[0].payload
        assert (retry.attempt, retry.next_attempt) == (1, 2)
        assert retry.due_at == world.now + retry.delay_ms
        assert world.advance(retry.delay_ms - 1) == ()
        offer = of_type(world.advance(1), "TaskOffered")[0].payload
        assert (offer.attempt, offer.epoch, offer.reason) == (2, 2, ev.OfferReason.RETRY)

    def test_backoff_grows_exponentially_within_jitter_and_is_capped(self) -> None:
        backoff = ev.Backoff(base_ms=1_000, max_ms=8_000, jitter=0.2)
        for attempt, nominal in ((1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000), (9, 8_000)):
            delay = backoff_delay(backoff, attempt, f"event-{attempt}")
            assert nominal * 0.8 <= delay <= min(nominal * 1.2, 8_000)
        assert backoff_delay(backoff, 2, "same") == backoff_delay(backoff, 2, "same")
        assert 0 <= jitter_fraction("x") < 1

    def test_last_failure_dead_letters_escalates_and_fails_the_change(self) -> None:
        world = World()
        world.request("c1")
        world.lease("c1", "lint", "lint-bot")
        world.run_step("c1", "test", "test-bot")
        for _ in range(2):
            world.fail("c1", "lint", "lint-bot")
            world.advance(120_000)
            world.lease("c1", "lint", "lint-bot")
        out = world.fail("c1", "lint", "lint-bot")
        assert types(out)[:2] == ["TaskDeadLettered", "EscalationRaised"]
        assert out[1].payload.severity is ev.Severity.CRITICAL
        cancelled = [e.envelope.task_id for e in of_type(out, "TaskCancelled")]
        assert cancelled == ["c1/policy", "c1/approval", "c1/merge", "c1/promote"]
        assert of_type(out, "ChangeFailed")[0].payload.failed_task == "c1/lint"
        assert world.state.closed["c1"] == "FAILED"

    def test_non_retryable_failure_dead_letters_at_once(self) -> None:
        world = World()
        world.request("c1")
        world.lease("c1", "lint")
        out = world.fail("c1", "lint", retryable=False)
        assert types(out)[:2] == ["TaskDeadLettered", "EscalationRaised"]

    def test_expiry_on_last_attempt_dead_letters(self) -> None:
        world = World()
        world.request("c1", template="deployment")
        world.run_step("c1", "test")
        world.lease("c1", "staging")
        out = world.advance(31_000)
        world.lease("c1", "staging")
        out = world.advance(31_000)
        world.lease("c1", "staging")
        out = world.advance(31_000)
        assert "TaskDeadLettered" in types(out) and "EscalationRaised" in types(out)


class TestPolicyAndApprovals:
    """Policy FAIL blocks in enforce mode; REVIEW asks humans; N-of-M counts valid signatures."""

    def _to_policy(self, world: World, change_id: str = "c1") -> None:
        world.request(change_id)
        world.run_step(change_id, "lint")
        world.run_step(change_id, "test", verified=ev.VerifiedState("h1", "b0", "l1", "art"))

    def test_enforced_fail_blocks_the_change(self) -> None:
        world = World()
        self._to_policy(world)
        out = world.run_step("c1", "policy", policy=world.policy(FAIL))
        assert of_type(out, "ChangeBlocked")[0].payload.reason.startswith("policy FAIL")
        assert world.state.closed["c1"] == "BLOCKED"

    def test_audit_mode_fail_is_recorded_but_does_not_block(self) -> None:
        world = World()
        self._to_policy(world)
        out = world.run_step("c1", "policy", policy=world.policy(FAIL, enforced=False))
        assert of_type(out, "PolicyEvaluated")[0].payload.enforced is False
        assert "ChangeBlocked" not in types(out)

    def test_review_requests_approval_for_the_verified_state(self) -> None:
        world = World()
        self._to_policy(world)
        out = world.run_step("c1", "policy", policy=world.policy(REVIEW))
        request = of_type(out, "ApprovalRequested")[0].payload
        assert request.state == ev.VerifiedState("h1", "b0", "l1", "art", "pol-7")
        assert request.evidence_digest == "evidence-REVIEW"

    def test_approval_for_another_state_is_rejected_as_stale(self) -> None:
        world = World()
        self._to_policy(world)
        world.run_step("c1", "policy", policy=world.policy(REVIEW))
        out = world.approve("c1", state=ev.VerifiedState("h0", "b0", "l1", "art", "pol-7"))
        assert out[0].payload.reason is ev.InputRejection.STALE_APPROVAL

    def test_author_and_non_reviewers_cannot_approve(self) -> None:
        world = World()
        self._to_policy(world)
        world.run_step("c1", "policy", policy=world.policy(REVIEW))
        assert world.approve("c1", reviewer="webhook")[0].payload.reason is (
            ev.InputRejection.NOT_A_REVIEWER
        )
        task = world.task("c1", "approval")
        out = world.send(
            ev.ApprovalSigned(world.state.changes["c1"].state, task.evidence_digest),
            Actor(ActorKind.HUMAN, "mallory"),
            change_id="c1",
            task_id=task.contract.id,
            scope=None,
        )
        assert out[0].payload.reason is ev.InputRejection.MISSING_SCOPE

    def test_two_of_two_approvals_complete_the_step_and_duplicates_do_not_count(self) -> None:
        world = World()
        world.request("d1", template="deployment")
        world.run_step("d1", "test")
        world.run_step("d1", "staging", touched=ev.Outputs(environments=("staging",)))
        world.run_step("d1", "policy", policy=world.policy(PASS))
        first = world.approve("d1", "alice")
        assert types(first) == ["ApprovalAccepted"]
        assert world.approve("d1", "alice")[0].payload.reason is (
            ev.InputRejection.DUPLICATE_APPROVAL
        )
        second = world.approve("d1", "bob")
        assert types(second)[:2] == ["ApprovalAccepted", "TaskCompleted"]
        assert second[0].payload.count == 2

    def test_reviewer_rejection_blocks_the_change(self) -> None:
        world = World()
        self._to_policy(world)
        world.run_step("c1", "policy", policy=world.policy(REVIEW))
        task = world.task("c1", "approval")
        out = world.send(
            ev.ApprovalRejected(world.state.changes["c1"].state, task.evidence_digest, "no"),
            Actor(ActorKind.HUMAN, "alice"),
            change_id="c1",
            task_id=task.contract.id,
            scope=agent_scope("alice", ("approval",), kind=ActorKind.HUMAN),
        )
        assert of_type(out, "ChangeBlocked")[0].payload.blocked_by == "alice"

    def test_head_move_invalidates_approvals(self) -> None:
        world = World()
        world.request("d1", template="deployment")
        world.run_step("d1", "test")
        world.run_step("d1", "staging", touched=ev.Outputs(environments=("staging",)))
        world.run_step("d1", "policy", policy=world.policy(PASS))
        world.approve("d1", "alice")
        out = world.send(
            ev.ChangeUpdated("b0", "h2", "l1"), Actor(ActorKind.PRODUCER, "webhook"), change_id="d1"
        )
        invalidated = of_type(out, "ApprovalInvalidated")[0].payload
        assert invalidated.approvers == ("alice",)
        assert world.task("d1", "approval").approvers == ()

    def test_policy_result_without_a_decision_is_rejected(self) -> None:
        world = World()
        self._to_policy(world)
        out = world.run_step("c1", "policy")
        assert out[0].payload.reason is ev.RejectReason.MISSING_OUTCOME


class TestPromotionGate:
    """Promotion is granted only when every ancestor verified the change's current state."""

    def test_check_that_verified_other_artifact_is_refused_at_completion(self) -> None:
        world = World()
        world.request("c1")
        world.run_step("c1", "test", verified=ev.VerifiedState("h1", "b0", "l1", "art-A"))
        out = world.run_step("c1", "lint", verified=ev.VerifiedState("h1", "b0", "l1", "art-B"))
        assert out[0].payload.reason is ev.RejectReason.STATE_MISMATCH

    def test_promote_is_denied_while_a_required_ancestor_is_not_done(self) -> None:
        world = World()
        world.request("d1", template="deployment")
        world.run_step("d1", "test")
        world.run_step("d1", "staging", touched=ev.Outputs(environments=("staging",)))
        world.run_step("d1", "policy", policy=world.policy(PASS))
        assert world.lease("d1", "prod")[0].payload.reason is ev.DenyReason.NOT_OFFERED

    def test_gate_problem_names_the_unverified_step(self) -> None:
        world = World()
        world.request("c1")
        change = world.state.changes["c1"]
        assert gate_problem(change, world.task("c1", "merge")) == "approval is PENDING"

    def test_cancel_closes_revokes_and_releases(self) -> None:
        world = World()
        world.request("c1")
        world.lease("c1", "lint")
        out = world.send(
            ev.ChangeCancelled("abandoned"), Actor(ActorKind.PRODUCER, "webhook"), change_id="c1"
        )
        assert types(out)[:2] == ["LeaseRevoked", "CompensationRequested"]
        assert out[0].payload.reason is ev.RevokeReason.CHANGE_CANCELLED
        assert types(out)[-2:] == ["ResourceLeaseReleased", "ChangeWithdrawn"]
        assert world.state.holders == {}
