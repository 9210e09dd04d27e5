"""Hostile input, fuzzed: every decoder fails only with its own error, and the coordinator
engine never raises — oversize, truncated, wrong-schema, replayed, forged and out-of-order
inputs each end in a dead letter or a recorded rejection with a reason."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.agents._errors import IdentityError
from sdlcflow.agents._identity import read_claims
from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.core.planner import TemplateError, packaged_template_texts, parse_template
from sdlcflow.identity import (
    CredentialRejected,
    SignatureRejected,
    generate_key_pair,
    sign_event,
    verify_claims,
    verify_event,
)
from sdlcflow.identity.issuers import IssuersFileError, parse_entries, ring_of
from sdlcflow.identity.revocation import RevocationFileError, parse_revocations
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.engine import BatchResult, CoordinatorEngine, Inbound
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.storage import StoredRepo
from sdlcflow.processors.testing import TestIssuer, change_request
from sdlcflow.processors.trust import CredentialGate
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.deadletter import MessageDeadLettered
from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS, COORDINATOR, DEAD_LETTER
from sdlcflow.streams.wire import EventCodec

T0 = 1_700_000_000_000
REPO = "acme/web"
MANY = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CODEC = EventCodec()
ISSUER = TestIssuer.new("fuzz-ops")
LINT = ISSUER.actor("lint-bot", capabilities=("lint",), issued_at=T0 - 1000)


def _lease_request(at: int = T0, event_id: str | None = None) -> Event:
    return LINT.event(
        ev.LeaseRequested("lint"),
        repo=REPO,
        at=at,
        change_id="chg-1",
        task_id="chg-1/lint",
        event_id=event_id,
    )


VALID_FRAMES: tuple[bytes, ...] = (
    CODEC.encode(_lease_request()),
    CODEC.encode(change_request(REPO, at=T0, change_id="chg-1")),
    CODEC.encode(
        LINT.event(
            ev.TaskSucceeded("lease-x", 1, (), ev.Outputs(paths=("src/a.py",))),
            repo=REPO,
            at=T0,
            change_id="chg-1",
            task_id="chg-1/lint",
        )
    ),
)


@st.composite
def mutated(draw: st.DrawFn, frames: Sequence[bytes]) -> bytes:
    """A valid frame with bytes flipped, cut, inserted or appended."""
    data = bytearray(draw(st.sampled_from(frames)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(("flip", "cut", "insert", "append")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


class TestDecodersOnlyRaiseTheirOwnError:
    """Arbitrary and mutated input to each decoder fails with that decoder's error, or parses."""

    @MANY
    @given(st.one_of(st.binary(max_size=600), mutated(VALID_FRAMES)))
    def test_wire_codec(self, data: bytes) -> None:
        try:
            CODEC.decode(data)
        except DecodeError as exc:
            assert exc.reason.value and exc.detail

    @MANY
    @given(
        st.one_of(
            st.text(max_size=300),
            st.builds(
                lambda head, body, sig: f"{head}.{body}.{sig}",
                st.sampled_from(("sdlc1", "sdlc2", "")),
                st.text(alphabet="ABCDEFabcdef0123456789-_=.+/", max_size=200),
                st.text(alphabet="ABCDEFabcdef0123456789-_", max_size=100),
            ),
            mutated((LINT.credential.encode(),)).map(lambda b: b.decode("latin-1")),
        )
    )
    def test_credential_tokens(self, token: str) -> None:
        keys = {ISSUER.key.key_id: ISSUER.key.public_key}
        try:
            verify_claims(token, keys, T0)
        except CredentialRejected as exc:
            assert exc.reason.value
        try:
            read_claims(token)
        except IdentityError as exc:
            assert "credential" in str(exc)

    @MANY
    @given(st.text(max_size=200))
    def test_event_signatures(self, signature: str) -> None:
        event = _lease_request()
        with pytest.raises(SignatureRejected):
            verify_event(event.envelope, event.payload, signature, LINT.key.public_key)

    @MANY
    @given(
        st.one_of(
            st.text(max_size=300),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4)
                ),
                max_leaves=12,
            ).map(json.dumps),
        )
    )
    def test_trust_files(self, text: str) -> None:
        try:
            ring_of(parse_entries(text, "issuers.json"), "issuers.json")
        except IssuersFileError as exc:
            assert "issuers.json" in str(exc)
        try:
            parse_revocations(text, "revoked.json")
        except RevocationFileError as exc:
            assert "revoked.json" in str(exc)


_TEMPLATE_TEXTS = tuple(text for _, (text, _) in sorted(packaged_template_texts().items()))


@st.composite
def template_texts(draw: st.DrawFn) -> str:
    """A packaged template with lines dropped, duplicated, swapped or garbled, or raw text."""
    if draw(st.booleans()):
        return draw(st.text(max_size=400))
    lines = draw(st.sampled_from(_TEMPLATE_TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 5))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(("drop", "dup", "garble", "indent")))
        if action == "drop":
            del lines[at]
        elif action == "dup":
            lines.insert(at, lines[at])
        elif action == "garble":
            lines[at] = draw(st.text(max_size=40))
        else:
            lines[at] = "  " + lines[at]
    return "\n".join(lines)


class TestTemplateLoader:
    """A broken pipeline template is a TemplateError naming its source, never a crash."""

    @settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(template_texts())
    def test_mutated_templates(self, text: str) -> None:
        try:
            parse_template(text, "fuzzed.yaml")
        except TemplateError as exc:
            assert "fuzzed.yaml" in str(exc)


# ------------------------------------------------------------------------------------------
# the coordinator engine


class Coordinator:
    """The engine with dict tables, as the faust shell drives it (one record per batch)."""

    def __init__(self) -> None:
        config = ProcessorConfig.from_env().with_options(lease_ttl_ms=10_000)
        self.engine = CoordinatorEngine(
            core_config(config),
            CredentialGate(ISSUER.trusted()),
            CODEC,
            group="fuzz",
            clock=lambda: T0 + 1000,
        )
        self.states: dict[str, StoredRepo] = {}
        self.offset = 0

    def feed(
        self, topic: str, value: bytes | None, key: bytes | None = REPO.encode()
    ) -> BatchResult:
        self.offset += 1
        record = Inbound(topic, 0, self.offset, key, value)
        result = self.engine.process([record], self._load, lambda _p: frozenset())
        for slot in result.slots.values():
            self.states[slot.repo] = StoredRepo(slot.state, tuple(slot.outbox))
        self.engine.commit(result)
        return result

    def _load(self, repo: str, _partition: int) -> StoredRepo | None:
        return self.states.get(repo)


def _decisions(result: BatchResult) -> list[Event]:
    return [CODEC.decode(r.value) for r in result.outbound if r.topic == COORDINATOR]


def _dead_letter_reasons(result: BatchResult) -> list[str]:
    reasons = []
    for record in result.outbound:
        if record.topic == DEAD_LETTER:
            payload = CODEC.decode(record.value).payload
            assert isinstance(payload, MessageDeadLettered)
            reasons.append(payload.reason)
    return reasons


def _identities_of(topic: str, value: bytes | None, key: bytes | None) -> frozenset[object]:
    """What the coordinator deduplicates on: a decodable event's id (a mutated copy that keeps
    the id of an event already handled is a replay of it), and for a change request the state
    it asks for (a request repeating a live change's current state changes nothing, whatever
    its id); otherwise the record itself."""
    try:
        event = CODEC.decode(value) if value is not None else None
    except DecodeError:
        event = None
    if event is None:
        return frozenset({(topic, value, key)})
    envelope, payload = event.envelope, event.payload
    if not isinstance(payload, ev.ChangeRequested):
        return frozenset({envelope.event_id})
    state = (envelope.repo, envelope.change_id, payload.head_sha, payload.base_sha,
             payload.lockfile_digest)  # fmt: skip
    return frozenset({envelope.event_id, state})


def _planned() -> Coordinator:
    coordinator = Coordinator()
    coordinator.feed(CHANGE_REQUESTS, VALID_FRAMES[1])
    return coordinator


class TestEngineUnderHostileInput:
    """Each hostile input ends in a dead letter or a recorded rejection with a reason."""

    @SOME
    @given(st.lists(st.one_of(st.binary(max_size=300), mutated(VALID_FRAMES)), max_size=6))
    def test_garbage_and_mutated_frames_are_dead_lettered(self, values: list[bytes]) -> None:
        coordinator = _planned()
        for value in values:
            result = coordinator.feed(AGENT_EVENTS, value)
            reasons = _dead_letter_reasons(result)
            if value in VALID_FRAMES:
                continue  # a mutation that happened to restore a valid frame
            assert reasons and all(reasons), value

    def test_oversize_frame_is_dead_lettered_as_oversize(self) -> None:
        frame = VALID_FRAMES[0] + b"\0" * CODEC.codec.max_message_bytes
        assert _dead_letter_reasons(_planned().feed(AGENT_EVENTS, frame)) == ["oversize"]

    def test_truncated_frame_is_dead_lettered_as_truncated(self) -> None:
        frame = VALID_FRAMES[0][: len(VALID_FRAMES[0]) // 2]
        assert _dead_letter_reasons(_planned().feed(AGENT_EVENTS, frame)) == ["truncated"]

    def test_wrong_schema_for_the_topic_is_dead_lettered(self) -> None:
        change = CODEC.encode(change_request(REPO, at=T0))
        assert _dead_letter_reasons(_planned().feed(AGENT_EVENTS, change)) == ["handler-invalid"]

    def test_forged_signature_is_dead_lettered_and_recorded(self) -> None:
        event = _lease_request()
        forger = generate_key_pair("forger")
        unsigned = dataclasses.replace(event.envelope, signature=None)
        forged = Event(
            dataclasses.replace(unsigned, signature=sign_event(unsigned, event.payload, forger)),
            event.payload,
        )
        result = _planned().feed(AGENT_EVENTS, CODEC.encode(forged))
        assert _dead_letter_reasons(result) == ["signature-invalid"]
        [rejected] = _decisions(result)
        assert isinstance(rejected.payload, ev.EventRejected) and rejected.payload.detail

    def test_replayed_input_changes_nothing_after_the_first(self) -> None:
        coordinator = _planned()
        frame = CODEC.encode(_lease_request(event_id=str(uuid.uuid4())))
        first = coordinator.feed(AGENT_EVENTS, frame)
        assert any(isinstance(e.payload, ev.LeaseGranted) for e in _decisions(first))
        state = coordinator.states[REPO].state
        again = coordinator.feed(AGENT_EVENTS, frame)
        assert not _decisions(again) and not _dead_letter_reasons(again)
        assert coordinator.states[REPO].state == state

    def test_out_of_order_result_is_recorded_as_rejected(self) -> None:
        result = _planned().feed(AGENT_EVENTS, VALID_FRAMES[2])  # a result before any grant
        [rejected, *_] = _decisions(result)
        assert isinstance(rejected.payload, ev.ResultRejected)
        assert rejected.payload.reason in (
            ev.RejectReason.UNKNOWN_LEASE,
            ev.RejectReason.NOT_HOLDER,
        )

    def test_a_change_request_repeating_a_live_changes_state_decides_nothing(self) -> None:
        """Idempotent by content (a producer's retry with a fresh id), so no decision, no error;
        the input itself stays on sdlc.change-requests and in the audit store."""
        planned = CODEC.decode(VALID_FRAMES[1])
        again = Event(dataclasses.replace(planned.envelope, event_id=str(uuid.uuid4())),
                      planned.payload)  # fmt: skip
        result = _planned().feed(CHANGE_REQUESTS, CODEC.encode(again), REPO.encode())
        assert result.outbound == []
        assert result.dead_letters == 0

    @SOME
    @given(
        st.lists(
            st.tuples(
                st.sampled_from((AGENT_EVENTS, CHANGE_REQUESTS)),
                st.one_of(
                    st.sampled_from(VALID_FRAMES),
                    mutated(VALID_FRAMES),
                    st.binary(max_size=100),
                    st.none(),
                ),
                st.sampled_from((REPO.encode(), b"other/repo", None)),
            ),
            max_size=8,
        )
    )
    def test_the_engine_never_raises_and_accounts_for_every_input(
        self, records: list[tuple[str, bytes | None, bytes | None]]
    ) -> None:
        coordinator = _planned()
        seen = set(_identities_of(CHANGE_REQUESTS, VALID_FRAMES[1], REPO.encode()))
        for topic, value, key in records:
            result = coordinator.feed(topic, value, key)
            identities = _identities_of(topic, value, key)
            duplicate = not identities.isdisjoint(seen)  # idempotent by design: see above
            seen |= identities
            if not duplicate:
                assert result.outbound, (topic, value, key)
