"""The canonical bytes and event digest stay byte-identical to the reference construction
(`json.dumps` with the canonical options over `to_plain`), the form agents in the field sign."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sdlcflow.core.events import Actor, ActorKind, Envelope
from sdlcflow.identity.canonical import DIGEST_PREFIX, canonical_bytes, to_plain
from sdlcflow.identity.signatures import EVENT_DOMAIN, event_digest

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
