"""The coordinator's table values: encoding equals the state's plain form and round-trips."""

from __future__ import annotations

import orjson

from sdlcflow.core import events as ev
from sdlcflow.core.decider import handle
from sdlcflow.core.events import Actor, ActorKind, ActorScope, Envelope, Event
from sdlcflow.core.state import RepoState, TaskStatus
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.storage import Outbound, StoredRepo, decode_repo, encode_repo
from sdlcflow.processors.testing import change_request

REPO = "acme/shop"
T0 = 1_700_000_000_000
AGENT = Actor(ActorKind.AGENT, "bot")
SCOPE = ActorScope("bot", ActorKind.AGENT, ("lint", "test"), (REPO,), ("*",), ("*",), 10**14)


def agent_event(payload: ev.Payload, change_id: str, task_id: str, seq: int) -> Event:
    envelope = Envelope(
        event_id=f"in-{seq}",
        type=type(payload).__name__,
        occurred_at=T0 + seq,
        repo=REPO,
        change_id=change_id,
        task_id=task_id,
        trace_id="0" * 32,
        causation_id=None,
        actor=AGENT,
    )
    return Event(envelope, payload, SCOPE)


def busy_states() -> list[RepoState]:
    """States along two changes' lives: planned (in conflict), leased, retrying, closed."""
    config = core_config(ProcessorConfig.from_env())
    state = RepoState()
    states = [state]
    for change_id in ("c1", "c2"):
        state, _ = handle(state, change_request(REPO, at=T0, change_id=change_id), config)
        states.append(state)
    offered = next(t for t in state.changes["c1"].tasks.values() if t.status is TaskStatus.OFFERED)
    task_id, capability = offered.contract.id, offered.contract.capability
    state, _ = handle(state, agent_event(ev.LeaseRequested(capability), "c1", task_id, 1), config)
    states.append(state)
    lease = state.changes["c1"].tasks[task_id].lease
    assert lease is not None
    failed = ev.TaskFailed(lease.lease_id, lease.epoch, "flaky", True)
    state, _ = handle(state, agent_event(failed, "c1", task_id, 2), config)
    states.append(state)
    cancel = change_request(REPO, at=T0 + 3, change_id="c2")
    cancelled = Event(
        Envelope(**{**cancel.envelope.__dict__, "type": "ChangeCancelled"}),
        ev.ChangeCancelled("withdrawn"),
    )
    state, _ = handle(state, cancelled, config)
    states.append(state)
    assert state.closed and state.changes["c1"].processed
    return states


class TestEncodeRepo:
    """A stored repository is encoded by orjson directly, to the same JSON as `to_plain`."""

    def test_the_encoded_state_is_the_plain_state(self) -> None:
        for state in busy_states():
            body = orjson.loads(encode_repo(StoredRepo(state)))
            assert body["state"] == orjson.loads(orjson.dumps(state.to_plain()))

    def test_a_stored_repository_round_trips_with_its_outbox(self) -> None:
        outbox = (Outbound("sdlc.coordinator", REPO.encode(), b"\x00value", (("h", b"v"),)),)
        for state in busy_states():
            stored = StoredRepo(state, outbox)
            assert decode_repo(encode_repo(stored)) == stored
