"""Lease state machine: offer, grant, deny, heartbeat, release, expire, revoke, fencing."""

from __future__ import annotations

from core_world import ALL_CAPS, World, agent_scope, of_type, types

from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind


def _world_with_lint_offered() -> World:
    world = World()
    world.request("c1")
    return world


class TestGrant:
    """An offered task is granted to one holder with a new epoch and an expiry."""

    def test_first_request_is_granted_with_epoch_one_and_ttl_expiry(self) -> None:
        world = _world_with_lint_offered()
        granted = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        assert granted.epoch == 1
        assert granted.holder == "agent-1"
        assert granted.expires_at == world.now + 30_000
        assert granted.inputs == world.task("c1", "lint").contract.inputs

    def test_second_holder_is_denied_while_lease_is_live(self) -> None:
        world = _world_with_lint_offered()
        world.lease("c1", "lint", "agent-1")
        denied = world.lease("c1", "lint", "agent-2")
        assert types(denied) == ["LeaseDenied"]
        assert denied[0].payload.reason is ev.DenyReason.ALREADY_LEASED

    def test_request_for_a_pending_task_is_denied_not_offered(self) -> None:
        world = _world_with_lint_offered()
        denied = world.lease("c1", "policy")
        assert denied[0].payload.reason is ev.DenyReason.NOT_OFFERED

    def test_request_for_unknown_change_is_rejected_with_reason(self) -> None:
        world = _world_with_lint_offered()
        out = world.send(
            ev.LeaseRequested("lint"),
            Actor(ActorKind.AGENT, "agent-1"),
            change_id="nope",
            task_id="nope/lint",
            scope=agent_scope("agent-1", ALL_CAPS),
        )
        assert out[0].payload.reason is ev.InputRejection.UNKNOWN_CHANGE


class TestHeartbeatAndExpiry:
    """Heartbeats extend; a missed heartbeat expires the lease and re-offers with epoch+1."""

    def test_heartbeat_extends_expiry(self) -> None:
        world = _world_with_lint_offered()
        lease = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        world.now += 20_000
        out = world.send(
            ev.LeaseHeartbeat(lease.lease_id, lease.epoch),
            Actor(ActorKind.AGENT, "agent-1"),
            change_id="c1",
            task_id="c1/lint",
            scope=agent_scope("agent-1", ALL_CAPS),
        )
        assert of_type(out, "LeaseExtended")[0].payload.expires_at == world.now + 30_000

    def test_heartbeat_from_old_epoch_is_rejected(self) -> None:
        world = _world_with_lint_offered()
        world.lease("c1", "lint")
        out = world.send(
            ev.LeaseHeartbeat("whatever", 7),
            Actor(ActorKind.AGENT, "agent-1"),
            change_id="c1",
            task_id="c1/lint",
            scope=agent_scope("agent-1", ALL_CAPS),
        )
        assert out[0].payload.reason is ev.RejectReason.STALE_EPOCH

    def test_expired_lease_is_reoffered_with_next_epoch_and_stale_result_rejected(self) -> None:
        world = _world_with_lint_offered()
        first = of_type(world.lease("c1", "lint", "slow"), "LeaseGranted")[0].payload
        expired = world.advance(31_000)
        assert types(expired) == ["LeaseExpired", "CompensationRequested", "TaskOffered"]
        offer = of_type(expired, "TaskOffered")[0].payload
        assert (offer.epoch, offer.attempt, offer.reason) == (2, 2, ev.OfferReason.EXPIRED)
        second = of_type(world.lease("c1", "lint", "fast"), "LeaseGranted")[0].payload
        assert second.epoch == 2
        # when the slow holder finally reports with its old epoch
        late = world.succeed("c1", "lint", "slow", epoch=first.epoch, lease_id=first.lease_id)
        assert types(late) == ["ResultRejected", "CompensationRequested"]
        assert late[0].payload.reason is ev.RejectReason.STALE_EPOCH
        assert world.task("c1", "lint").status.value == "LEASED"

    def test_heartbeats_cannot_extend_past_the_task_timeout(self) -> None:
        world = World()
        world.request("c1")
        lease = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        deadline = world.task("c1", "lint").lease.deadline  # type: ignore[union-attr]
        world.now = deadline - 1_000
        out = world.send(
            ev.LeaseHeartbeat(lease.lease_id, lease.epoch),
            Actor(ActorKind.AGENT, "agent-1"),
            change_id="c1",
            task_id="c1/lint",
            scope=agent_scope("agent-1", ALL_CAPS),
        )
        assert of_type(out, "LeaseExtended")[0].payload.expires_at == deadline


class TestReleaseAndRevoke:
    """Released leases are re-offered; revoked credentials lose their leases."""

    def test_release_returns_lease_and_reoffers(self) -> None:
        world = _world_with_lint_offered()
        lease = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        out = world.send(
            ev.LeaseReleased(lease.lease_id, lease.epoch, "shutting down"),
            Actor(ActorKind.AGENT, "agent-1"),
            change_id="c1",
            task_id="c1/lint",
            scope=agent_scope("agent-1", ALL_CAPS),
        )
        assert types(out) == ["LeaseReturned", "TaskOffered"]
        assert out[1].payload.epoch == 2

    def test_credential_revocation_revokes_the_actors_leases(self) -> None:
        world = _world_with_lint_offered()
        world.lease("c1", "lint", "rogue")
        out = world.send(ev.CredentialRevoked("rogue", "key leaked"), Actor(ActorKind.OPS, "ops"))
        assert types(out) == ["LeaseRevoked", "CompensationRequested", "TaskOffered"]
        assert out[0].payload.reason is ev.RevokeReason.CREDENTIAL_REVOKED

    def test_head_move_revokes_live_leases_and_result_with_old_inputs_is_rejected(self) -> None:
        world = _world_with_lint_offered()
        old = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        moved = world.send(ev.ChangeUpdated("b0", "h2", "l1"), world_producer(), change_id="c1")
        assert "LeaseRevoked" in types(moved) and "ChangeRevised" in types(moved)
        assert world.task("c1", "lint").contract.inputs[1] == ev.ArtifactRef("head", "h2")
        late = world.succeed(
            "c1", "lint", epoch=old.epoch, lease_id=old.lease_id, inputs=old.inputs
        )
        assert late[0].type == "ResultRejected"
        assert "CompensationRequested" in types(late)


class TestResultBinding:
    """A result binds to the lease's inputs; mismatched inputs are rejected."""

    def test_result_with_other_inputs_is_rejected(self) -> None:
        world = _world_with_lint_offered()
        world.lease("c1", "lint")
        other = (ev.ArtifactRef("head", "evil"),)
        out = world.succeed("c1", "lint", inputs=other)
        assert out[0].payload.reason is ev.RejectReason.INPUTS_CHANGED

    def test_completion_carries_the_leased_inputs(self) -> None:
        world = _world_with_lint_offered()
        world.lease("c1", "lint")
        done = of_type(world.succeed("c1", "lint"), "TaskCompleted")[0].payload
        assert done.inputs == world.task("c1", "lint").contract.inputs
        assert done.epoch == 1

    def test_second_result_for_a_completed_task_is_rejected(self) -> None:
        world = _world_with_lint_offered()
        lease = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        world.succeed("c1", "lint")
        again = world.succeed("c1", "lint", epoch=lease.epoch, lease_id=lease.lease_id)
        assert again[0].payload.reason is ev.RejectReason.TASK_CLOSED
        assert world.task("c1", "lint").completions == 1


def world_producer() -> Actor:
    return Actor(ActorKind.PRODUCER, "webhook")


class TestLostOffer:
    """A task left OFFERED (offer lost in a rebalance or a crash) is offered again on Tick."""

    def _offers_of_lint(self, events: tuple[ev.Event, ...]) -> list[ev.Event]:
        return [e for e in of_type(events, "TaskOffered") if e.envelope.task_id == "c1/lint"]

    def test_untaken_offer_is_repeated_after_the_offer_timeout_with_the_same_attempt(
        self,
    ) -> None:
        world = _world_with_lint_offered()
        timeout = world.config.offer_timeout_ms
        assert self._offers_of_lint(world.advance(timeout - 1)) == []
        again = self._offers_of_lint(world.advance(1))
        assert len(again) == 1
        first = self._offers_of_lint(tuple(world.log))[0].payload
        assert again[0].payload.attempt == first.attempt == 1
        assert again[0].payload.epoch == first.epoch
        assert world.task("c1", "lint").offered_at == world.now

    def test_repeated_offer_is_not_repeated_again_before_another_timeout(self) -> None:
        world = _world_with_lint_offered()
        world.advance(world.config.offer_timeout_ms)
        assert self._offers_of_lint(world.advance(world.config.offer_timeout_ms // 2)) == []

    def test_repeated_offer_can_be_leased_and_replay_rebuilds_the_same_state(self) -> None:
        world = _world_with_lint_offered()
        world.advance(world.config.offer_timeout_ms)
        granted = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        assert granted.epoch == 1
        assert world.replayed() == world.state

    def test_leased_task_is_not_offered_while_its_lease_lives(self) -> None:
        world = _world_with_lint_offered()
        world.advance(world.config.offer_timeout_ms - 1)
        world.lease("c1", "lint")
        assert self._offers_of_lint(world.advance(1)) == []
