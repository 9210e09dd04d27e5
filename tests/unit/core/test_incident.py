"""The motivating incident, played against the decider: an auth-library bump and an env-var
rename overlap on prod; they must be serialised and the later one re-verified on top."""

from __future__ import annotations

from core_world import PRODUCER, World, of_type, types

from sdlcflow.core import events as ev
from sdlcflow.core.decider import verifies

PASS = ev.PolicyDecision.PASS


def _verify_checks(world: World, change_id: str, template_steps: tuple[str, ...]) -> None:
    change = world.state.changes[change_id]
    for step in template_steps:
        state = world.state.changes[change_id].state
        verified = ev.VerifiedState(
            state.head_sha, state.base_sha, state.lockfile_digest, f"art-{change.state.head_sha}"
        )
        if step == "policy":
            world.run_step(change_id, step, policy=world.policy(PASS))
        else:
            world.run_step(change_id, step, verified=verified)


def _requests(world: World) -> tuple[ev.Event, ...]:
    """The two overlapping changes of the incident, both on main0: an auth-library bump by the
    dependency agent and, concurrently, an env-var rename by the refactor agent (the decisions
    on the second are returned)."""
    world.request(
        "auth-bump",
        template="dependency-upgrade",
        head="a1",
        base="main0",
        lockfile="lock-new",
        paths=("requirements.lock",),
        resources=("auth-lib",),
        environments=("prod",),
    )
    return world.request(
        "env-rename",
        head="e1",
        base="main0",
        lockfile="lock-old",
        paths=("config/settings.py",),
        resources=("AUTH_URL",),
        environments=("prod",),
    )


def _land_auth_bump(world: World) -> None:
    _verify_checks(world, "auth-bump", ("lint", "test", "scan", "policy"))
    world.run_step("auth-bump", "merge", "merger")
    world.run_step("auth-bump", "promote", "deployer")
    assert world.state.changes["env-rename"].state.base_sha == "a1"


class TestUpdatesAfterTheLanding:
    """Once the later change is re-verified on top of what landed, no producer update takes it
    back under it: not a new push naming the old base, not an old update replayed."""

    def test_a_new_push_keeps_the_change_on_top_of_what_landed(self) -> None:
        world = World()
        _requests(world)
        _land_auth_bump(world)
        # the branch's merge-base is still main0: the webhook says so
        world.now += 1
        pushed = world.request("env-rename", head="e2", base="main0", lockfile="lock-old")
        state = of_type(pushed, "ChangeRevised")[0].payload.state
        assert (state.head_sha, state.base_sha) == ("e2", "a1")
        assert world.replayed() == world.state

    def test_an_update_made_before_the_landing_naming_another_base_keeps_the_landed_one(
        self,
    ) -> None:
        world = World()
        _requests(world)
        world.now += 1
        late = world.event(
            ev.ChangeUpdated("main1", "e2", "lock-old"), PRODUCER, change_id="env-rename"
        )
        _land_auth_bump(world)
        out = world.feed(late)  # delivered after the landing
        state = of_type(out, "ChangeRevised")[0].payload.state
        assert (state.head_sha, state.base_sha) == ("e2", "a1")

    def test_an_update_that_found_nothing_to_change_changes_nothing_when_replayed(self) -> None:
        world = World()
        _requests(world)
        again = world.event(
            ev.ChangeUpdated("main0", "e1", "lock-old"), PRODUCER, change_id="env-rename"
        )
        assert world.feed(again) == ()  # the change is already there
        _land_auth_bump(world)
        before = world.state
        assert world.feed(again) == ()
        assert world.state == before


class TestMotivatingIncident:
    """Overlapping changes never reach prod untested together."""

    def test_auth_bump_and_env_rename_are_serialised_and_later_one_reverified(self) -> None:
        world = World()
        # given: the dependency agent bumps the auth library and, concurrently, the refactor
        # agent renames an environment variable
        planned_b = _requests(world)
        # then: the conflict is detected and the later change does not get the resources
        conflicts = of_type(planned_b, "ConflictDetected")
        assert [c.payload.other_change_id for c in conflicts] == ["auth-bump"]
        assert "env:prod" in conflicts[0].payload.overlaps
        assert "ResourceLeaseGranted" not in types(planned_b)

        # when: env-rename passes all its checks on the old base first
        _verify_checks(world, "env-rename", ("lint", "test", "policy"))
        denied = world.lease("env-rename", "merge", "merger")
        # then: it may not merge while auth-bump holds prod
        assert [d.payload.reason for d in of_type(denied, "LeaseDenied")] == [
            ev.DenyReason.RESOURCE_BUSY
        ]

        # when: auth-bump goes all the way to prod
        _verify_checks(world, "auth-bump", ("lint", "test", "scan", "policy"))
        world.run_step("auth-bump", "merge", "merger")
        landed = world.run_step("auth-bump", "promote", "deployer")

        # then: auth-bump is promoted, and env-rename is re-verified on top of it
        assert world.state.closed["auth-bump"] == "PROMOTED"
        revised = of_type(landed, "ChangeRevised")
        assert len(revised) == 1 and revised[0].envelope.change_id == "env-rename"
        assert revised[0].payload.reason is ev.ReviseReason.BASE_MOVED
        assert revised[0].payload.state.base_sha == "a1"
        granted = of_type(landed, "ResourceLeaseGranted")
        assert [g.envelope.change_id for g in granted] == ["env-rename"]
        rename = world.state.changes["env-rename"]
        assert world.task("env-rename", "test").status.value == "OFFERED"
        assert world.task("env-rename", "merge").verified is None

        # and: the merge is refused until the checks ran again on the new base
        refused = world.lease("env-rename", "merge", "merger")
        assert of_type(refused, "LeaseDenied")[0].payload.reason is ev.DenyReason.NOT_OFFERED
        _verify_checks(world, "env-rename", ("lint", "test", "policy"))
        world.run_step("env-rename", "merge", "merger")
        promoted = world.run_step("env-rename", "promote", "deployer")

        final = of_type(promoted, "ChangePromoted")[0].payload.state
        assert final.base_sha == "a1" and final.head_sha == rename.state.head_sha
        assert verifies(final, final, exact=True)
        assert world.replayed() == world.state
