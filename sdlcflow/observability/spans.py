"""OpenTelemetry spans per event handled, continuing the trace carried in Kafka headers.

Each service (processors, agents, audit sink) opens one span per input event: its trace is the
event's trace id, its parent the span named by the record's `traceparent` header. While a span
is open, the records the service publishes carry that span's id in their own `traceparent`
(`sdlcflow.tracing.active_context`), so the next hop's span is its child and one trace shows a
change end to end: submit -> coordinator (planner) -> agent -> coordinator -> audit.

Tracing is off by default and costs nothing then. `SDLCFLOW_TRACING` turns it on:
- `otlp`: batch-export to an OTLP/HTTP collector (`OTEL_EXPORTER_OTLP_ENDPOINT`, default
  http://localhost:4318); needs the optional extra `pip install 'sdlcflow[otlp]'`;
- `file:<path>`: append one JSON object per finished span to `<path>` (tests, no collector);
- `off` or unset: no spans.
Tests in one process pass the SDK's `InMemorySpanExporter` to `configure`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from sdlcflow.core.events import Envelope
from sdlcflow.errors import SdlcflowError
from sdlcflow.observability.logs import EventIds
from sdlcflow.tracing import TraceContext, is_trace_id, new_span_id

TRACING_ENV = "SDLCFLOW_TRACING"
OTLP_EXTRA = "pip install 'sdlcflow[otlp]'"

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


class TracingConfigError(SdlcflowError):
    """SDLCFLOW_TRACING names an exporter that cannot be used."""


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per span to a file (trace and span ids as W3C hex)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = b"".join(orjson.dumps(span_document(span)) + b"\n" for span in spans)
        with self._lock, self.path.open("ab") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_document(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain JSON: ids in W3C hex, times in ns, attributes."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "service": span.resource.attributes.get("service.name"),
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


def _exporter_from_env(setting: str) -> tuple[SpanExporter, bool] | None:
    """The exporter SDLCFLOW_TRACING names and whether to batch it; None when off."""
    if setting in ("", "off", "none"):
        return None
    if setting == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingConfigError(
                f"{TRACING_ENV}=otlp needs the OTLP exporter: {OTLP_EXTRA}"
            ) from exc
        return OTLPSpanExporter(), True
    if setting.startswith("file:") and len(setting) > len("file:"):
        return JsonLinesExporter(Path(setting.removeprefix("file:"))), False
    raise TracingConfigError(f"{TRACING_ENV}={setting!r} is not one of: off, otlp, file:<path>")


def configure(service: str, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on for this process as `service`; True when spans are recorded.

    With no `exporter`, SDLCFLOW_TRACING decides (off when unset).
    """
    global _provider, _tracer
    batched = False
    if exporter is None:
        chosen = _exporter_from_env(os.environ.get(TRACING_ENV, "").strip())
        if chosen is None:
            shutdown()
            return False
        exporter, batched = chosen
    shutdown()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    processor = BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer("sdlcflow")
    return True


def shutdown() -> None:
    """Flush and stop tracing (spans are no longer recorded)."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer = None, None


def enabled() -> bool:
    return _tracer is not None


def _parent(trace_id: str, parent: TraceContext | None) -> otel_context.Context | None:
    """A remote parent in the event's trace: the header's span, or an unnamed one (None, so a
    new trace, when the envelope's trace id is not W3C: the span still names the event)."""
    if not is_trace_id(trace_id):
        return None
    span_id = parent.span_id if parent is not None and parent.trace_id == trace_id else None
    context = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id or new_span_id(), 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(context))


def _attributes(envelope: Envelope, extra: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sdlcflow.event.type": envelope.type,
        "sdlcflow.event.id": envelope.event_id,
        "sdlcflow.repo": envelope.repo,
        "sdlcflow.actor": envelope.actor.id,
        "sdlcflow.trace.id": envelope.trace_id,
        **extra,
    }
    if envelope.change_id:
        values["sdlcflow.change.id"] = envelope.change_id
    if envelope.task_id:
        values["sdlcflow.task.id"] = envelope.task_id
    return values


@contextmanager
def event_span(
    name: str, envelope: Envelope, parent: TraceContext | None, **attributes: Any
) -> Iterator[None]:
    """A span around handling one event, current for the block (a no-op when tracing is off)."""
    tracer = _tracer
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        name,
        context=_parent(envelope.trace_id, parent),
        kind=SpanKind.CONSUMER,
        attributes=_attributes(envelope, attributes),
    ):
        yield


def record_span(
    name: str,
    envelope: Envelope,
    parent: TraceContext | None,
    start_ns: int,
    end_ns: int,
    **attributes: Any,
) -> None:
    """A span already finished (e.g. an event stored with its whole batch)."""
    tracer = _tracer
    if tracer is None:
        return
    span = tracer.start_span(
        name,
        context=_parent(envelope.trace_id, parent),
        kind=SpanKind.CONSUMER,
        attributes=_attributes(envelope, attributes),
        start_time=start_ns,
    )
    span.end(end_time=end_ns)


class handling:
    """`event_span` plus the event's ids bound to every log record of the block.

    A class, not a generator: it runs once per event on the coordinator's hot path, where
    with tracing off it costs one contextvar set and reset."""

    __slots__ = ("_ids", "_span", "envelope", "name", "parent")

    def __init__(
        self,
        name: str,
        envelope: Envelope,
        parent: TraceContext | None,
        *,
        agent_id: str | None = None,
    ) -> None:
        self.name, self.envelope, self.parent = name, envelope, parent
        self._ids = EventIds(envelope.trace_id, envelope.change_id, envelope.task_id, agent_id)
        self._span: Any = None

    def __enter__(self) -> None:
        self._ids.__enter__()
        if _tracer is not None:
            self._span = event_span(self.name, self.envelope, self.parent)
            self._span.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._span is not None:
                self._span.__exit__(*exc)
        finally:
            self._ids.__exit__()
