"""The coordinator shell's engine: decode, authenticate, decide, route, index, dead-letter."""

from __future__ import annotations

import uuid

import orjson
from processors_harness import T0, Harness

from sdlcflow.core import events as ev
from sdlcflow.core.decider import handle
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event, LeaseRequested, Tick
from sdlcflow.core.state import Outcome, RepoState
from sdlcflow.processors.engine import next_due, tick_repo
from sdlcflow.processors.storage import decode_index
from sdlcflow.processors.testing import SignedActor, TestIssuer, change_request
from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS, COORDINATOR, DEAD_LETTER, TICKS
from sdlcflow.tracing import new_trace_id

REPO = "acme/web"


def _types(events: list[Event]) -> list[str]:
    return [e.envelope.type for e in events]


def _offers(h: Harness, result: object) -> dict[str, ev.TaskOffered]:
    found = {}
    for event in h.decoded(result.outbound, COORDINATOR):  # type: ignore[attr-defined]
        if isinstance(event.payload, ev.TaskOffered):
            found[event.payload.contract.step] = event
    return found


def _plan(h: Harness) -> tuple[str, dict[str, Event]]:
    request = change_request(REPO, at=T0)
    result = h.run([h.record(CHANGE_REQUESTS, request)])
    return request.envelope.change_id or "", _offers(h, result)


def _ask_for_lint(actor: SignedActor, change_id: str, offers: dict[str, Event]) -> Event:
    """`actor`'s signed request for the lease of the change's offered lint task."""
    task_id = offers["lint"].envelope.task_id
    return actor.event(
        LeaseRequested("lint"), repo=REPO, at=T0 + 1, change_id=change_id, task_id=task_id
    )


def _tick(h: Harness, at: int, partition: int = 0) -> Event:
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        type="Tick",
        occurred_at=at,
        repo=tick_repo(partition),
        change_id=None,
        task_id=None,
        trace_id=new_trace_id(),
        causation_id=None,
        actor=Actor(ActorKind.COORDINATOR, "unit-coordinator"),
    )
    return Event(envelope, Tick(1))


class TestPlanning:
    """A change request becomes decisions on sdlc.coordinator, offers on the task topics."""

    def test_offers_reach_the_log_and_the_capability_topic(self, harness: Harness) -> None:
        request = change_request(REPO, at=T0)
        result = harness.run([harness.record(CHANGE_REQUESTS, request)])
        types = _types(harness.decoded(result.outbound, COORDINATOR))
        assert types[0] == "ChangePlanned"
        assert types.count("TaskOffered") == 2
        assert len(harness.decoded(result.outbound, "sdlc.tasks.lint")) == 1
        assert len(harness.decoded(result.outbound, "sdlc.tasks.test")) == 1
        assert all(r.key == REPO.encode() for r in result.outbound)

    def test_the_table_value_holds_the_state_and_its_outbox(self, harness: Harness) -> None:
        request = change_request(REPO, at=T0)
        result = harness.run([harness.record(CHANGE_REQUESTS, request)])
        stored = harness.stored(REPO)
        assert request.envelope.change_id in stored.state.changes
        assert list(stored.outbox) == result.outbound

    def test_a_repo_with_a_live_change_enters_the_tick_index(self, harness: Harness) -> None:
        _plan(harness)
        assert decode_index(harness.index[0]) == {REPO}


class TestLeases:
    """Signed agents get leases; ticks expire them and re-offer with the next epoch."""

    def test_a_signed_lease_request_is_granted_on_both_topics(self, harness: Harness) -> None:
        change_id, offers = _plan(harness)
        bot = harness.issuer.actor("lint-bot", capabilities=("lint",), issued_at=T0)
        task_id = offers["lint"].envelope.task_id
        ask = bot.event(
            LeaseRequested("lint"), repo=REPO, at=T0 + 1, change_id=change_id, task_id=task_id
        )
        result = harness.run([harness.record(AGENT_EVENTS, ask)])
        grants = [e for e in harness.decoded(result.outbound, "sdlc.tasks.lint")]
        assert _types(grants) == ["LeaseGranted"]
        assert result.grants == 1

    def test_a_lease_request_for_an_unknown_change_is_answered_on_the_task_topic(
        self, harness: Harness
    ) -> None:
        """The asking agent reads its task topic: the refusal must reach it there, or it
        waits out its grant timeout for every stale offer (a closed change's re-delivery)."""
        bot = harness.issuer.actor("lint-bot", capabilities=("lint",), issued_at=T0)
        gone = str(uuid.uuid4())
        ask = bot.event(
            LeaseRequested("lint"), repo=REPO, at=T0 + 1, change_id=gone, task_id=f"{gone}/lint"
        )
        result = harness.run([harness.record(AGENT_EVENTS, ask)])
        answers = harness.decoded(result.outbound, "sdlc.tasks.lint")
        assert _types(answers) == ["EventRejected"]
        assert answers[0].envelope.causation_id == ask.event_id
        assert _types(harness.decoded(result.outbound, COORDINATOR)) == ["EventRejected"]

    def test_a_tick_after_expiry_reoffers_with_the_next_epoch(self, harness: Harness) -> None:
        change_id, offers = _plan(harness)
        bot = harness.issuer.actor("lint-bot", capabilities=("lint",), issued_at=T0)
        task_id = offers["lint"].envelope.task_id
        ask = bot.event(
            LeaseRequested("lint"), repo=REPO, at=T0 + 1, change_id=change_id, task_id=task_id
        )
        harness.run([harness.record(AGENT_EVENTS, ask)])
        early = harness.run([harness.record(TICKS, _tick(harness, T0 + 5_000))])
        assert early.outbound == []
        harness.now[0] = T0 + 20_000
        late = harness.run([harness.record(TICKS, _tick(harness, T0 + 20_000))])
        decided = harness.decoded(late.outbound, COORDINATOR)
        assert "LeaseExpired" in _types(decided)
        reoffer = [e.payload for e in decided if isinstance(e.payload, ev.TaskOffered)]
        assert [o.epoch for o in reoffer] == [offers["lint"].payload.epoch + 1]

    def test_next_due_matches_the_core_tick_handler(self, harness: Harness) -> None:
        change_id, offers = _plan(harness)
        bot = harness.issuer.actor("lint-bot", capabilities=("lint",), issued_at=T0)
        ask = _ask_for_lint(bot, change_id, offers)
        harness.run([harness.record(AGENT_EVENTS, ask)])
        state = harness.stored(REPO).state
        _assert_due_is_when_the_core_acts(harness, state)

    def test_next_due_of_untaken_offers_matches_the_core_tick_handler(
        self, harness: Harness
    ) -> None:
        _plan(harness)
        state = harness.stored(REPO).state
        due = _assert_due_is_when_the_core_acts(harness, state)
        assert due == T0 + harness.engine.core.offer_timeout_ms


def _assert_due_is_when_the_core_acts(harness: Harness, state: RepoState) -> int:
    """A tick just before `next_due` decides nothing; a tick at it decides something."""
    due = next_due(state, harness.engine.core)
    assert due is not None
    tick = _tick(harness, due - 1)
    per_repo = Event(Envelope(**{**tick.envelope.__dict__, "repo": REPO}), tick.payload)
    assert handle(state, per_repo, harness.engine.core)[1] == ()
    at_due = Event(Envelope(**{**per_repo.envelope.__dict__, "occurred_at": due}), tick.payload)
    assert handle(state, at_due, harness.engine.core)[1] != ()
    return due


class TestRefusals:
    """Bad input is dead-lettered with its raw bytes and the batch goes on."""

    def test_poison_is_dead_lettered_and_the_batch_goes_on(self, harness: Harness) -> None:
        poison = harness.record(AGENT_EVENTS, value=b"\x00garbage", key=REPO.encode())
        request = harness.record(CHANGE_REQUESTS, change_request(REPO, at=T0))
        result = harness.run([poison, request])
        letters = harness.decoded(result.outbound, DEAD_LETTER)
        assert len(letters) == 1
        assert letters[0].payload.value == b"\x00garbage"  # type: ignore[union-attr]
        assert "ChangePlanned" in _types(harness.decoded(result.outbound, COORDINATOR))

    def test_an_untrusted_issuer_is_rejected_and_recorded(self, harness: Harness) -> None:
        change_id, offers = _plan(harness)
        forger = TestIssuer.new().actor("lint-bot", capabilities=("lint",), issued_at=T0)
        ask = _ask_for_lint(forger, change_id, offers)
        result = harness.run([harness.record(AGENT_EVENTS, ask)])
        letters = harness.decoded(result.outbound, DEAD_LETTER)
        assert [letter.payload.reason for letter in letters] == ["credential-unknown-issuer"]  # type: ignore[union-attr]
        assert _types(harness.decoded(result.outbound, COORDINATOR)) == ["EventRejected"]

    def test_an_unsigned_agent_event_is_refused(self, harness: Harness) -> None:
        change_id, offers = _plan(harness)
        bot = harness.issuer.actor("lint-bot", capabilities=("lint",), issued_at=T0)
        ask = _ask_for_lint(bot, change_id, offers)
        unsigned = Event(Envelope(**{**ask.envelope.__dict__, "signature": None}), ask.payload)
        result = harness.run([harness.record(AGENT_EVENTS, unsigned)])
        letters = harness.decoded(result.outbound, DEAD_LETTER)
        assert [letter.payload.reason for letter in letters] == ["signature-missing"]  # type: ignore[union-attr]

    def test_a_record_keyed_by_another_repo_is_dead_lettered(self, harness: Harness) -> None:
        record = harness.record(CHANGE_REQUESTS, change_request(REPO, at=T0), key=b"other/repo")
        result = harness.run([record])
        assert result.dead_letters == 1
        assert harness.decoded(result.outbound, COORDINATOR) == []

    def test_a_future_dated_input_is_only_dead_lettered(self, harness: Harness) -> None:
        result = harness.run(
            [harness.record(CHANGE_REQUESTS, change_request(REPO, at=T0 + 3_600_000))]
        )
        assert result.dead_letters == 1
        assert harness.decoded(result.outbound, COORDINATOR) == []


class TestRecovery:
    """A value loaded from the table has its outbox published again, before new decisions."""

    def test_the_outbox_is_republished_after_a_restart(self, harness: Harness) -> None:
        first = harness.run([harness.record(CHANGE_REQUESTS, change_request(REPO, at=T0))])
        harness.engine.forget()  # as after a restart: nothing in memory, tables intact
        second = harness.run([harness.record(CHANGE_REQUESTS, change_request(REPO, at=T0 + 1))])
        republished = second.outbound[: len(first.outbound)]
        assert [r.value for r in republished] == [r.value for r in first.outbound]
        assert len(second.outbound) > len(first.outbound)

    def test_a_duplicate_input_decides_nothing(self, harness: Harness) -> None:
        request = change_request(REPO, at=T0)
        harness.run([harness.record(CHANGE_REQUESTS, request)])
        again = harness.run([harness.record(CHANGE_REQUESTS, request)])
        assert again.outbound == []


class TestScope:
    """A coordinator scoped to some repositories skips the others unread."""

    def test_records_of_other_repositories_are_skipped(self, harness: Harness) -> None:
        harness.engine.repos = ("mine/*",)
        result = harness.run([harness.record(CHANGE_REQUESTS, change_request(REPO, at=T0))])
        assert result.consumed == 1
        assert result.outbound == [] and result.slots == {}


def _cancel(change_id: str, at: int) -> Event:
    request = change_request(REPO, at=at, change_id=change_id)
    return Event(
        Envelope(**{**request.envelope.__dict__, "type": "ChangeCancelled"}),
        ev.ChangeCancelled("withdrawn"),
    )


def _closed_one(h: Harness) -> str:
    """Plan a change and cancel it: the repository remembers it closed."""
    change_id, _offers = _plan(h)
    h.run([h.record(CHANGE_REQUESTS, _cancel(change_id, T0 + 1))])
    return change_id


class TestClosedKey:
    """A repository's closed changes live under their own key, written only when one closes."""

    def test_a_batch_that_closes_no_change_writes_no_closed_key(self, harness: Harness) -> None:
        change_id, offers = _plan(harness)
        bot = harness.issuer.actor("lint-bot", capabilities=("lint",), issued_at=T0)
        ask = _ask_for_lint(bot, change_id, offers)
        result = harness.run([harness.record(AGENT_EVENTS, ask)])
        assert result.grants == 1
        assert harness.closed_writes == []
        assert harness.stored(REPO).state.closed == {}

    def test_a_batch_that_closes_a_change_writes_the_closed_key_once(
        self, harness: Harness
    ) -> None:
        change_id = _closed_one(harness)
        assert harness.closed_writes == [REPO]
        assert harness.stored(REPO).state.closed == {change_id: Outcome.CANCELLED.value}
        _plan(harness)  # a later batch that closes nothing leaves the key alone
        assert harness.closed_writes == [REPO]
        assert harness.stored(REPO).state.closed == {change_id: Outcome.CANCELLED.value}

    def test_a_restarted_engine_refuses_a_closed_change_read_from_its_closed_key(
        self, harness: Harness
    ) -> None:
        change_id = _closed_one(harness)
        harness.engine.forget()  # as after a restart: states come from the tables
        again = change_request(REPO, at=T0 + 2, change_id=change_id)
        result = harness.run([harness.record(CHANGE_REQUESTS, again)])
        decided = _types(harness.decoded(result.outbound, COORDINATOR))
        # after the loaded outbox (republished: storage.py), the refusal; nothing planned
        assert decided[-1] == "EventRejected"
        assert "ChangePlanned" not in decided
        assert harness.closed_writes == [REPO]

    def test_a_repository_stored_in_format_1_gets_its_closed_key_at_its_next_write(
        self, harness: Harness
    ) -> None:
        change_id = _closed_one(harness)
        state = harness.stored(REPO).state
        harness.states[REPO] = orjson.dumps({"v": 1, "state": state.to_plain(), "outbox": []})
        del harness.closed[REPO]
        harness.closed_writes.clear()
        harness.engine.forget()
        _plan(harness)
        assert harness.closed_writes == [REPO]
        assert harness.stored(REPO).state.closed == {change_id: Outcome.CANCELLED.value}
