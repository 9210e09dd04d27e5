"""Policy mode switches (issue #6): an ops PolicyModeChanged becomes the repository's mode,
which every later offer carries to the policy agent."""

from __future__ import annotations

from core_world import REPO, World, agent_scope

from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind

OPS = Actor(ActorKind.OPS, "ops-alice")


def _offers(out: tuple[ev.Event, ...]) -> list[ev.TaskOffered]:
    return [e.payload for e in out if isinstance(e.payload, ev.TaskOffered)]


class TestPolicyModeSwitch:
    """An accepted switch is state (a PolicyModeSet decision) and travels with every offer."""

    def test_offers_carry_no_modes_before_any_switch(self) -> None:
        world = World()
        offers = _offers(world.request("c1"))
        assert offers and all(offer.policy_modes == {} for offer in offers)

    def test_accepted_switch_reaches_the_next_offers(self) -> None:
        world = World()
        out = world.send(ev.PolicyModeChanged("tests-on-head", True, "rollout done"), OPS)
        assert [e.type for e in out] == ["PolicyModeSet"]
        expected = ev.PolicyModeSet("tests-on-head", True, "rollout done", "ops-alice")
        assert out[0].payload == expected
        assert world.state.policy_modes == {"tests-on-head": True}
        offers = _offers(world.request("c1"))
        assert offers and all(o.policy_modes == {"tests-on-head": True} for o in offers)

    def test_switch_for_every_policy_replaces_earlier_per_policy_modes(self) -> None:
        world = World()
        world.send(ev.PolicyModeChanged("tests-on-head", True, "enforce one"), OPS)
        world.send(ev.PolicyModeChanged("*", False, "back to audit"), OPS)
        world.send(ev.PolicyModeChanged("no-secrets", True, "enforce another"), OPS)
        assert world.state.policy_modes == {"*": False, "no-secrets": True}

    def test_switch_from_an_agent_is_rejected_and_changes_nothing(self) -> None:
        world = World()
        agent = Actor(ActorKind.AGENT, "agent-1")
        scope = agent_scope("agent-1", ("policy",))
        out = world.send(ev.PolicyModeChanged("*", False, "sneaky"), agent, scope=scope)
        assert [e.type for e in out] == ["EventRejected"]
        assert out[0].payload.reason is ev.InputRejection.WRONG_KIND
        assert world.state.policy_modes == {}
        assert all(o.policy_modes == {} for o in _offers(world.request("c1")))

    def test_duplicate_switch_decides_nothing_new(self) -> None:
        world = World()
        switch = world.event(ev.PolicyModeChanged("*", True, "enforce"), OPS, event_id="sw-1")
        assert len(world.feed(switch)) == 1
        assert world.feed(switch) == ()

    def test_replaying_the_decisions_gives_the_same_modes(self) -> None:
        world = World()
        world.send(ev.PolicyModeChanged("tests-on-head", False, "audit first"), OPS)
        world.request("c1")
        world.send(ev.PolicyModeChanged("tests-on-head", True, "now enforce"), OPS)
        assert world.replayed() == world.state
        assert world.replayed().policy_modes == {"tests-on-head": True}
        assert world.state.repo == REPO
