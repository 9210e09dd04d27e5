"""The canonical bytes and event digest stay byte-identical to the reference construction
(`json.dumps` with the canonical options over `to_plain`), the form agents in the field sign."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.core.events import Actor, ActorKind, Envelope
from sdlcflow.identity.canonical import (
    DIGEST_PREFIX,
    CanonicalJsonError,
    canonical_bytes,
    float_free,
    to_plain,
)
from sdlcflow.identity.signatures import EVENT_DOMAIN, event_digest
from sdlcflow.streams.testing import events
from sdlcflow.streams.wire import event_types

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_text, inner, max_size=4)
    ),
    max_leaves=20,
)


def reference_bytes(value: Any) -> bytes:
    return json.dumps(
        to_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def reference_event_digest(envelope: Any, payload: Any) -> str:
    plain = to_plain(envelope)
    plain.pop("signature", None)
    signed = {"envelope": plain, "payload": to_plain(payload)}
    return DIGEST_PREFIX + hashlib.sha256(EVENT_DOMAIN + reference_bytes(signed)).hexdigest()


def _outcome(digest: Any, envelope: Any, payload: Any) -> str:
    """The digest, or the error's type (a non-finite float has no canonical form)."""
    try:
        return str(digest(envelope, payload))
    except CanonicalJsonError as exc:
        return type(exc).__name__


class TestCanonicalForm:
    """Faster construction, same bytes: any drift would break every signature in the field."""

    @settings(max_examples=300, deadline=None)
    @given(value=_values)
    def test_canonical_bytes_equal_the_reference_construction(self, value: Any) -> None:
        assert canonical_bytes(value) == reference_bytes(value)

    @settings(max_examples=200, deadline=None)
    @given(
        repo=_text,
        actor_id=_text,
        occurred_at=st.integers(min_value=0, max_value=2**62),
        credential=st.none() | _text,
        payload=st.dictionaries(_text, _values, max_size=4),
    )
    def test_event_digest_equals_the_reference_construction(
        self,
        repo: str,
        actor_id: str,
        occurred_at: int,
        credential: str | None,
        payload: dict[str, Any],
    ) -> None:
        envelope = Envelope(
            event_id="e-1",
            type="TaskSucceeded",
            occurred_at=occurred_at,
            repo=repo,
            change_id="c-1",
            task_id=None,
            trace_id="0af7651916cd43dd8448eb211c80319c",
            causation_id=None,
            actor=Actor(ActorKind.AGENT, actor_id),
            signature="k:sig",
            credential=credential,
        )
        assert event_digest(envelope, payload) == reference_event_digest(envelope, payload)


class TestEventDigestOfEveryEventType:
    """Every event type, as the wire carries it, digests to the reference construction's bytes
    (float-free types go through orjson, the others through the reference encoder)."""

    @pytest.mark.parametrize("event_type", sorted(event_types()))
    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_event_digest_equals_the_reference_construction(
        self, event_type: str, data: st.DataObject
    ) -> None:
        event = data.draw(events(event_type))
        ours = _outcome(event_digest, event.envelope, event.payload)
        assert ours == _outcome(reference_event_digest, event.envelope, event.payload)

    def test_a_float_where_the_type_allows_one_keeps_the_reference_spelling(self) -> None:
        assert not float_free(float) and not float_free(dict[str, Any])
        assert canonical_bytes({"jitter": 1e16, "n": 1e-05}) == b'{"jitter":1e+16,"n":1e-05}'

    def test_recursive_and_union_types_are_judged_cautiously(self) -> None:
        assert float_free(int | None) and float_free(tuple[str, ...])
        assert float_free(Mapping[str, bool]) and not float_free(Mapping[str, float])
        assert not float_free(tuple[int, float | None])
