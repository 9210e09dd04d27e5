"""Arbitrary input events never make the decider raise: rejections are results."""

from __future__ import annotations

from core_world import ALL_CAPS, REPO, World, agent_scope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event

CHANGES = ("c1", "c2", "ghost")
STEPS = ("lint", "test", "policy", "approval", "merge", "promote", "nope")
texts = st.sampled_from(("", "h1", "b0", "l1", "x", "*", "src/app.py", "prod"))

# every input payload, with its fields drawn from values that sometimes match real ones
payloads = st.one_of(
    *(st.builds(cls, **{}) for cls in ev.INPUT_TYPES.values() if cls is not ev.ChangeRequested),
    st.builds(ev.ChangeRequested, template=st.sampled_from(("code-change", "deployment", "?"))),
)


@st.composite
def inputs(draw: st.DrawFn) -> Event:
    payload = draw(payloads)
    kind = draw(st.sampled_from(tuple(ActorKind)))
    actor_id = draw(st.sampled_from(("a1", "alice", "webhook")))
    change = draw(st.sampled_from((*CHANGES, None)))
    task = draw(st.sampled_from(STEPS)) if change else None
    scope = draw(
        st.one_of(
            st.none(),
            st.just(agent_scope(actor_id, (*ALL_CAPS, "approval"), kind=kind)),
            st.builds(ev.ActorScope),
        )
    )
    envelope = Envelope(
        event_id=f"fuzz-{draw(st.integers(0, 30))}",
        type=type(payload).__name__,
        occurred_at=draw(st.integers(0, 2 * 10**12)),
        repo=draw(st.sampled_from((REPO, "other/repo"))),
        change_id=change,
        task_id=f"{change}/{task}" if task else None,
        trace_id="t",
        causation_id=None,
        actor=Actor(kind, actor_id),
    )
    return Event(envelope, payload, scope)


class TestFuzzedInputs:
    """Whatever arrives, handle returns decisions and the decision log replays to the state."""

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
    )
    @given(st.lists(inputs(), max_size=25))
    def test_arbitrary_inputs_never_raise_and_replay_exactly(self, events: list[Event]) -> None:
        world = World()
        world.request("c1")
        world.request("c2", template="deployment")
        for event in events:
            world.feed(event)
        assert world.replayed() == world.state
