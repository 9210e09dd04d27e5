"""W3C traceparent values are built and parsed exactly as the Trace Context spec says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdlcflow.tracing import (
    TraceContext,
    TraceContextError,
    check_trace_id,
    context_for_trace,
    new_trace,
    parse_traceparent,
)

SPEC_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TestTraceparent:
    """A trace context survives formatting and parsing; malformed headers are refused."""

    def test_the_spec_example_parses(self) -> None:
        context = parse_traceparent(SPEC_EXAMPLE)
        assert context == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
        assert context.traceparent() == SPEC_EXAMPLE

    def test_bytes_headers_parse_like_text(self) -> None:
        assert parse_traceparent(SPEC_EXAMPLE.encode()) == parse_traceparent(SPEC_EXAMPLE)

    @given(
        st.text("0123456789abcdef", min_size=32, max_size=32),
        st.text("0123456789abcdef", min_size=16, max_size=16),
        st.booleans(),
    )
    def test_any_valid_context_round_trips(
        self, trace_id: str, span_id: str, sampled: bool
    ) -> None:
        if trace_id == "0" * 32 or span_id == "0" * 16:
            with pytest.raises(TraceContextError):
                TraceContext(trace_id, span_id, sampled)
            return
        context = TraceContext(trace_id, span_id, sampled)
        assert parse_traceparent(context.traceparent()) == context

    @pytest.mark.parametrize(
        "header",
        [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            SPEC_EXAMPLE + "-extra",
        ],
    )
    def test_malformed_headers_are_refused(self, header: str) -> None:
        with pytest.raises(TraceContextError):
            parse_traceparent(header)

    def test_a_child_keeps_the_trace_and_changes_the_span(self) -> None:
        parent = new_trace()
        child = parent.child()
        assert (child.trace_id, child.sampled) == (parent.trace_id, parent.sampled)
        assert child.span_id != parent.span_id

    def test_a_context_for_an_envelope_trace_keeps_its_id(self) -> None:
        trace_id = new_trace().trace_id
        assert context_for_trace(trace_id).trace_id == check_trace_id(trace_id)
