"""The transport's cheap filters: what the task-topic consumers skip without decoding."""

from __future__ import annotations

from sdlcflow.agents import task_contract
from sdlcflow.agents._transport import frame_headers, repo_matcher
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
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
