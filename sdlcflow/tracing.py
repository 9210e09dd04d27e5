"""W3C Trace Context (`traceparent`) helpers.

Every sdlcflow event carries a trace id in its envelope; the same trace also travels in the
Kafka `traceparent` header so that tracing tools that never decode Avro can still follow a change
across topics. Format (https://www.w3.org/TR/trace-context/#traceparent-header):
`00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.

When an OpenTelemetry span of the same trace is current (`sdlcflow.observability.spans`), the
span id a published record carries is that span's, so the consumer's span becomes its child;
otherwise it is a fresh random id, as before.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from opentelemetry import trace as otel_trace

from sdlcflow.errors import SdlcflowError

TRACEPARENT_HEADER = "traceparent"
_VERSION = "00"
_SAMPLED = 0x01
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}\Z")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}\Z")


class TraceContextError(SdlcflowError):
    """A traceparent or trace id that does not follow W3C Trace Context."""


@dataclass(frozen=True)
class TraceContext:
    """One hop of a trace: the trace it belongs to and the span that caused this message."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def __post_init__(self) -> None:
        check_trace_id(self.trace_id)
        if not _SPAN_ID.match(self.span_id) or self.span_id == "0" * 16:
            raise TraceContextError(
                f"span id {self.span_id!r} is not 16 lower-case hex digits (and not all zero); "
                "make one with new_span_id()"
            )

    def traceparent(self) -> str:
        """The header value for this context."""
        flags = _SAMPLED if self.sampled else 0
        return f"{_VERSION}-{self.trace_id}-{self.span_id}-{flags:02x}"

    def child(self) -> TraceContext:
        """The context of a new span in the same trace (a message caused by this one)."""
        return active_context(self.trace_id) or TraceContext(
            self.trace_id, new_span_id(), self.sampled
        )


def active_context(trace_id: str) -> TraceContext | None:
    """The current OpenTelemetry span as a context, when one is recording in `trace_id`."""
    span = otel_trace.get_current_span()
    context = span.get_span_context()
    if not span.is_recording() or f"{context.trace_id:032x}" != trace_id:
        return None
    return TraceContext(trace_id, f"{context.span_id:016x}")


def new_trace_id() -> str:
    """A random, valid W3C trace id (never all zeros)."""
    while True:
        value = secrets.token_hex(16)
        if value != "0" * 32:
            return value


def new_span_id() -> str:
    """A random, valid W3C parent/span id (never all zeros)."""
    while True:
        value = secrets.token_hex(8)
        if value != "0" * 16:
            return value


def new_trace() -> TraceContext:
    """The root context of a new trace, as started at the edge (CLI, SDK, webhook)."""
    return TraceContext(new_trace_id(), new_span_id())


def is_trace_id(value: str) -> bool:
    """True when `value` is a valid W3C trace id."""
    return bool(_TRACE_ID.match(value)) and value != "0" * 32


def check_trace_id(value: str) -> str:
    """Return `value` when it is a valid W3C trace id, raise TraceContextError otherwise."""
    if not is_trace_id(value):
        raise TraceContextError(
            f"trace id {value!r} is not 32 lower-case hex digits (and not all zero); "
            "make one with sdlcflow.tracing.new_trace_id()"
        )
    return value


def parse_traceparent(header: str | bytes) -> TraceContext:
    """Parse a `traceparent` header value; raise TraceContextError naming what is wrong."""
    text = header.decode("ascii", "replace") if isinstance(header, bytes) else header
    text = text.strip()
    match = _TRACEPARENT.match(text)
    if match is None:
        raise TraceContextError(
            f"traceparent {text!r} is not '00-<32 hex>-<16 hex>-<2 hex>' (W3C Trace Context)"
        )
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == _VERSION and rest):
        raise TraceContextError(f"traceparent {text!r} has an invalid version or trailing data")
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & _SAMPLED))


def context_for_trace(trace_id: str) -> TraceContext:
    """The current span of the given trace (see `active_context`), else a fresh span id in it;
    used when only the envelope's trace id is known."""
    return active_context(trace_id) or TraceContext(check_trace_id(trace_id), new_span_id())
