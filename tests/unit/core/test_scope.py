"""Invariant 8 at the decider: actors act only within their verified scope and the contract."""

from __future__ import annotations

from dataclasses import replace

from core_world import ALL_CAPS, World, agent_scope, of_type

from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind


def _lease_with(world: World, step: str, **scope_args: object) -> tuple[ev.Event, ...]:
    return world.lease("c1", step, "agent-1", scope=agent_scope("agent-1", **scope_args))  # type: ignore[arg-type]


class TestLeaseScope:
    """Lease requests outside the credential's capabilities, paths or envs are rejected."""

    def test_capability_outside_scope(self) -> None:
        world = World()
        world.request("c1")
        out = _lease_with(world, "lint", capabilities=("test",))
        assert out[0].payload.reason is ev.InputRejection.CAPABILITY_OUT_OF_SCOPE

    def test_declared_paths_outside_scope(self) -> None:
        world = _merge_ready()
        out = world.lease(
            "c1", "merge", "merger", scope=agent_scope("merger", ALL_CAPS, paths=("docs/*",))
        )
        assert out[0].payload.reason is ev.InputRejection.PATH_OUT_OF_SCOPE

    def test_environment_outside_scope(self) -> None:
        world = _merge_ready()
        world.run_step("c1", "merge", "merger", touched=ev.Outputs(paths=("src/app.py",)))
        out = world.lease(
            "c1",
            "promote",
            "deployer",
            scope=agent_scope("deployer", ALL_CAPS, environments=("staging",)),
        )
        assert out[0].payload.reason is ev.InputRejection.ENVIRONMENT_OUT_OF_SCOPE

    def test_wrong_repo_and_expired_and_impersonated_scopes(self) -> None:
        world = World()
        world.request("c1")
        assert (
            _lease_with(world, "lint", capabilities=ALL_CAPS, repos=("other/*",))[0].payload.reason
            is ev.InputRejection.REPO_OUT_OF_SCOPE
        )
        assert (
            _lease_with(world, "lint", capabilities=ALL_CAPS, expires_at=world.now)[
                0
            ].payload.reason
            is ev.InputRejection.SCOPE_EXPIRED
        )
        out = world.lease("c1", "lint", "agent-1", scope=agent_scope("agent-2", ALL_CAPS))
        assert out[0].payload.reason is ev.InputRejection.ACTOR_MISMATCH

    def test_agent_event_without_scope_is_rejected(self) -> None:
        world = World()
        world.request("c1")
        out = world.send(
            ev.LeaseRequested("lint"),
            Actor(ActorKind.AGENT, "agent-1"),
            change_id="c1",
            task_id="c1/lint",
            scope=None,
        )
        assert out[0].payload.reason is ev.InputRejection.MISSING_SCOPE

    def test_agent_cannot_submit_change_requests_or_ticks(self) -> None:
        world = World()
        out = world.send(
            ev.Tick(), Actor(ActorKind.AGENT, "agent-1"), scope=agent_scope("agent-1", ALL_CAPS)
        )
        assert out[0].payload.reason is ev.InputRejection.WRONG_KIND

    def test_human_task_is_not_leased_by_an_agent(self) -> None:
        world = World()
        world.request("c1", template="deployment")
        world.run_step("c1", "test")
        world.run_step("c1", "staging", touched=ev.Outputs(environments=("staging",)))
        world.run_step("c1", "policy", policy=world.policy(ev.PolicyDecision.PASS))
        out = world.lease("c1", "approval", "agent-1", scope=agent_scope("agent-1", ("approval",)))
        assert of_type(out, "LeaseDenied")[0].payload.reason is ev.DenyReason.WRONG_AUTHORITY


class TestResultScope:
    """Results that touch undeclared or out-of-scope outputs get a ResultRejected and are
    compensated; the lease is left to expire so the task is offered again (least privilege)."""

    def test_touching_an_undeclared_path_is_rejected(self) -> None:
        world = _merge_ready()
        world.lease("c1", "merge", "merger")
        out = world.succeed("c1", "merge", "merger", touched=ev.Outputs(paths=("infra/prod.tf",)))
        assert out[0].type == "ResultRejected"
        assert out[0].payload.reason is ev.RejectReason.OUTPUT_NOT_DECLARED
        assert "infra/prod.tf" in out[0].payload.detail
        assert out[1].type == "CompensationRequested"
        assert world.task("c1", "merge").status.value == "LEASED"

    def test_touching_an_undeclared_environment_is_rejected(self) -> None:
        world = _merge_ready()
        world.lease("c1", "merge", "merger")
        out = world.succeed("c1", "merge", "merger", touched=ev.Outputs(environments=("prod",)))
        assert out[0].payload.reason is ev.RejectReason.OUTPUT_NOT_DECLARED
        assert not of_type(out, "TaskCompleted")

    def test_touching_a_declared_path_outside_the_credential_is_rejected(self) -> None:
        world = _merge_ready()
        world.lease("c1", "merge", "merger")
        narrow = agent_scope("merger", ALL_CAPS, paths=("docs/*",))
        out = world.succeed(
            "c1", "merge", "merger", touched=ev.Outputs(paths=("src/app.py",)), scope=narrow
        )
        assert out[0].payload.reason is ev.RejectReason.PATH_OUT_OF_SCOPE

    def test_deploying_to_an_environment_outside_the_credential_is_rejected(self) -> None:
        world = _merge_ready()
        world.run_step("c1", "merge", "merger", touched=ev.Outputs(paths=("src/app.py",)))
        world.lease("c1", "promote", "deployer")
        staging_only = agent_scope("deployer", ALL_CAPS, environments=("staging",))
        out = world.succeed(
            "c1",
            "promote",
            "deployer",
            touched=ev.Outputs(environments=("prod",)),
            scope=staging_only,
        )
        assert out[0].type == "ResultRejected"
        assert out[0].payload.reason is ev.RejectReason.ENVIRONMENT_OUT_OF_SCOPE
        assert not of_type(out, "ChangePromoted")

    def test_result_from_someone_else_than_the_holder_is_rejected(self) -> None:
        world = World()
        world.request("c1")
        world.lease("c1", "lint", "agent-1")
        out = world.succeed("c1", "lint", "agent-2")
        assert out[0].payload.reason is ev.RejectReason.NOT_HOLDER


def _merge_ready() -> World:
    world = World()
    world.request("c1")
    world.run_step("c1", "lint")
    world.run_step("c1", "test")
    world.run_step("c1", "policy", policy=world.policy(ev.PolicyDecision.PASS))
    return world


class TestMalformedInputs:
    """An envelope whose type does not match its payload is refused, not dispatched."""

    def test_payload_must_match_the_envelope_type(self) -> None:
        world = World()
        world.request("c1")
        event = world.event(
            ev.LeaseRequested("lint"),
            Actor(ActorKind.AGENT, "agent-1"),
            change_id="c1",
            task_id="c1/lint",
            scope=agent_scope("agent-1", ALL_CAPS),
        )
        forged = ev.Event(replace(event.envelope, type="Tick"), event.payload, event.scope)
        out = world.feed(forged)
        assert [e.payload.reason for e in out] == [ev.InputRejection.WRONG_KIND]

    def test_decisions_fed_back_as_inputs_decide_nothing(self) -> None:
        world = World()
        planned = world.request("c1")
        before = world.state
        assert world.feed(planned[0]) == ()
        assert world.state == before
