"""The transport's cheap filters (what the task-topic consumers skip without decoding), and
the offer consumer's hand-over across a revocation, with a scripted stand-in for librdkafka."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from sdlcflow.agents import _transport as transport
from sdlcflow.agents import task_contract
from sdlcflow.agents._transport import OfferConsumer, frame_headers, repo_matcher
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.streams.consumer import Delivery
from sdlcflow.streams.wire import EventCodec


def _event(payload: ev.Payload) -> Event:
    envelope = Envelope(
        event_id="00000000-0000-4000-8000-000000000001", type=type(payload).__name__,
        occurred_at=1, repo="acme/login", change_id="c-1", task_id="c-1/lint",
        trace_id="0" * 31 + "1", causation_id=None, actor=Actor(ActorKind.COORDINATOR, "c"),
    )  # fmt: skip
    return Event(envelope, payload)


class TestRepoMatcher:
    """Repository globs select messages by key; no globs select every repository."""

    def test_no_patterns_take_every_repository(self) -> None:
        matches = repo_matcher(())
        assert matches(b"acme/login") and matches(None)

    def test_globs_select_by_key_and_keyless_messages_are_not_taken(self) -> None:
        matches = repo_matcher(("bench-1/*", "acme/login"))
        assert matches(b"bench-1/repo-7") and matches(b"acme/login")
        assert not matches(b"bench-2/repo-7") and not matches(b"acme/login-v2")
        assert not matches(None)


class TestFrameHeaders:
    """A frame's 5-byte header names its type, so skipped types are never decoded."""

    def test_an_offer_is_recognised_by_its_header_and_a_grant_is_not(self) -> None:
        codec = EventCodec()
        skip = frame_headers(codec, {"TaskOffered"})
        offer = codec.encode(
            _event(ev.TaskOffered(task_contract("lint"), 1, 1, ev.OfferReason.READY))
        )
        grant = codec.encode(_event(ev.LeaseGranted("l-1", "agent-1", 1, 10, 1, ())))
        assert offer[:5] in skip
        assert grant[:5] not in skip


TOPIC = "sdlc.tasks.lint"


class _Message:
    def __init__(self, offset: int, value: bytes, key: bytes) -> None:
        self._offset, self._value, self._key = offset, value, key

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


class _ScriptedConsumer:
    """Answers each poll from a script: a message, None, or a step to run first (a revoke)."""

    script: list[Any] = []

    def __init__(self, _config: dict[str, Any]) -> None:
        self.owned = [TopicPartition(TOPIC, 0)]
        self.commits: list[list[TopicPartition]] = []

    def poll(self, _timeout: float) -> _Message | None:
        if not self.script:
            return None
        step = self.script.pop(0)
        if callable(step):
            step(self)
            return None
        return step  # type: ignore[no-any-return]

    def assignment(self) -> list[TopicPartition]:
        return self.owned

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(offsets)


class TestOfferHandOverAcrossARevocation:
    """What a poll's revocation took away is neither handed to the loop nor committed."""

    @pytest.fixture
    def consumer(self, monkeypatch: pytest.MonkeyPatch) -> OfferConsumer:
        monkeypatch.setattr(transport, "Consumer", _ScriptedConsumer)
        return OfferConsumer(
            config={}, topics=[TOPIC], codec=EventCodec(), group_id="g", slots=1,
            deliver=lambda _batch: None, revoked=self.revoked.extend,
            wanted_repo=repo_matcher(("acme/*",)),
        )  # fmt: skip

    revoked: list[tuple[str, int]] = []

    def _offer(self, offset: int) -> _Message:
        offer = ev.TaskOffered(task_contract("lint"), 1, 1, ev.OfferReason.READY)
        return _Message(offset, EventCodec().encode(_event(offer)), b"acme/login")

    def test_held_items_of_a_partition_revoked_during_the_poll_are_dropped(
        self, consumer: OfferConsumer
    ) -> None:
        self.revoked.clear()

        def revoke(fake: Any) -> None:
            consumer._on_revoke(fake, fake.owned)

        _ScriptedConsumer.script[:] = [self._offer(1)]
        first = consumer._poll_offers(free=1)
        assert [type(item) for item in first] == [Delivery]
        # every slot busy: the next offer and a skipped message after it are held
        _ScriptedConsumer.script[:] = [self._offer(2), _Message(3, b"x", b"other/repo")]
        assert consumer._poll_offers(free=0) == []
        assert consumer.read_ahead == 1 and consumer.held_messages == 2
        # a slot frees; the poll after taking the held items revokes their partition
        _ScriptedConsumer.script[:] = [revoke]
        assert consumer._poll_offers(free=1) == []
        assert self.revoked == [(TOPIC, 0)]
        assert consumer.read_ahead == 0 and consumer.held_messages == 0

    def test_positions_of_a_partition_no_longer_assigned_are_not_committed(
        self, consumer: OfferConsumer
    ) -> None:
        fake: Any = consumer._consumer
        consumer.commit({(TOPIC, 0): 4, (TOPIC, 1): 9})
        consumer._apply_commits(asynchronous=True)
        assert [[(tp.partition, tp.offset) for tp in c] for c in fake.commits] == [[(0, 4)]]
