"""The coordinator's table values: encoding equals the state's plain form and round-trips, the
closed changes apart; format 1 values still load."""

from __future__ import annotations

import orjson
import pytest

from sdlcflow.core import events as ev
from sdlcflow.core.decider import handle
from sdlcflow.core.events import Actor, ActorKind, ActorScope, Envelope, Event
from sdlcflow.core.records import replace
from sdlcflow.core.state import CLOSED_MEMORY, Outcome, RepoState, TaskStatus
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.storage import (
    ChangeFragments,
    Outbound,
    StorageError,
    StoredRepo,
    closed_key,
    closed_record,
    decode_repo,
    encode_closed,
    encode_repo,
    repo_of_closed_key,
    state_plain,
)
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
    """A stored repository is encoded by orjson directly, to the same JSON as `to_plain`; its
    closed changes go under their own key."""

    def test_the_main_value_is_the_plain_state_without_its_closed_changes(self) -> None:
        for state in busy_states():
            body = orjson.loads(encode_repo(StoredRepo(state)))
            plain = orjson.loads(orjson.dumps(state.to_plain()))
            del plain["closed"]
            assert body["state"] == plain

    def test_value_and_closed_key_give_the_plain_state(self) -> None:
        for state in busy_states():
            main, closed = encode_repo(StoredRepo(state)), encode_closed(state.closed)
            assert state_plain(main, closed) == orjson.loads(orjson.dumps(state.to_plain()))

    def test_a_stored_repository_round_trips_with_its_outbox(self) -> None:
        outbox = (Outbound("sdlc.coordinator", REPO.encode(), b"\x00value", (("h", b"v"),)),)
        for state in busy_states():
            stored = StoredRepo(state, outbox)
            assert decode_repo(encode_repo(stored), encode_closed(state.closed)) == stored

    def test_reused_change_fragments_give_the_same_bytes_and_follow_every_change(self) -> None:
        fragments = ChangeFragments()
        for state in busy_states():  # each state shares some changes with the one before
            assert encode_repo(StoredRepo(state), fragments) == encode_repo(StoredRepo(state))
        state = busy_states()[-1]
        change = state.changes["c1"]
        revised = replace(state, changes={"c1": replace(change, revision=change.revision + 1)})
        body = orjson.loads(encode_repo(StoredRepo(revised), fragments))
        assert body["state"]["changes"]["c1"]["revision"] == change.revision + 1

    def test_a_repository_that_never_closed_a_change_needs_no_closed_key(self) -> None:
        state = busy_states()[1]
        assert not state.closed
        assert decode_repo(encode_repo(StoredRepo(state))) == StoredRepo(state)


class TestClosedKey:
    """The closed key cannot be a repository's, and a crash between the two writes recovers."""

    def test_no_repository_key_is_a_closed_key(self) -> None:
        for repo in (REPO, "~partition/3", "a\xffclosed", "emoji/\U0001f600closed", ""):
            key = repo.encode("utf-8")
            assert repo_of_closed_key(key) is None
            assert repo_of_closed_key(closed_key(key)) == key

    def test_a_closed_key_written_just_before_a_crash_is_cut_back_to_the_value(self) -> None:
        state = busy_states()[-1]
        newer = {**state.closed, "c9": Outcome.PROMOTED.value}
        loaded = decode_repo(encode_repo(StoredRepo(state)), encode_closed(newer))
        assert loaded.state == state

    def test_a_full_closed_key_keeps_what_its_batch_let_go_so_both_values_load_whole(
        self,
    ) -> None:
        closed = {f"c{i}": Outcome.PROMOTED.value for i in range(CLOSED_MEMORY)}
        before = replace(busy_states()[-1], closed=closed)
        after = replace(before, closed={**dict(list(closed.items())[1:]), "c-new": "failed"})
        written = encode_closed(closed_record(before.closed, after.closed))
        # a crash after the closed key, before the value naming it: the old value loads whole
        assert decode_repo(encode_repo(StoredRepo(before)), written).state == before
        assert decode_repo(encode_repo(StoredRepo(after)), written).state == after

    def test_a_value_whose_closed_key_is_missing_is_refused(self) -> None:
        state = busy_states()[-1]
        with pytest.raises(StorageError, match="missing"):
            decode_repo(encode_repo(StoredRepo(state)))


class TestFormat1:
    """Values written before the closed key existed (closed inline) still load."""

    def test_a_format_1_value_still_loads_and_asks_for_a_closed_key(self) -> None:
        for state in busy_states():
            old = orjson.dumps({"v": 1, "state": state.to_plain(), "outbox": []})
            loaded = decode_repo(old)
            assert loaded.state == state
            assert loaded.closed_apart is not bool(state.closed)
            assert state_plain(old) == orjson.loads(orjson.dumps(state.to_plain()))

    def test_an_unknown_format_is_refused(self) -> None:
        state = busy_states()[0]
        with pytest.raises(StorageError, match="format 3"):
            decode_repo(orjson.dumps({"v": 3, "state": state.to_plain(), "outbox": []}))
