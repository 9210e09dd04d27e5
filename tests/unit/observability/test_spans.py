"""Spans per event handled continue the trace of the Kafka header and name the next hop's parent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sdlcflow.core.events import Actor, ActorKind, Envelope
from sdlcflow.observability import spans
from sdlcflow.observability.logs import bound
from sdlcflow.tracing import TraceContext, active_context, context_for_trace, new_trace

AGENT = Actor(ActorKind.AGENT, "lint-1")


def _envelope(trace_id: str) -> Envelope:
    return Envelope("e1", "TaskOffered", 1, "acme/login", "c1", "t1", trace_id, None, AGENT)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    spans.configure("unit-test", memory)
    yield memory
    spans.shutdown()


class TestEventSpans:
    """A handled event's span is a child of the header's span, in the event's trace."""

    def test_the_span_continues_the_headers_trace(self, exporter: InMemorySpanExporter) -> None:
        parent = new_trace()
        with spans.event_span("agent lint", _envelope(parent.trace_id), parent):
            pass
        (span,) = exporter.get_finished_spans()
        context = span.get_span_context()
        assert context is not None and span.parent is not None
        assert f"{context.trace_id:032x}" == parent.trace_id
        assert f"{span.parent.span_id:016x}" == parent.span_id
        assert span.attributes is not None
        assert span.attributes["sdlcflow.task.id"] == "t1"

    def test_records_published_inside_carry_the_spans_id(
        self, exporter: InMemorySpanExporter
    ) -> None:
        parent = new_trace()
        with spans.event_span("coordinator", _envelope(parent.trace_id), parent):
            child = parent.child()
            fresh = context_for_trace(parent.trace_id)
        (span,) = exporter.get_finished_spans()
        context = span.get_span_context()
        assert context is not None
        assert child.span_id == fresh.span_id == f"{context.span_id:016x}"

    def test_a_header_of_another_trace_is_not_the_parent(
        self, exporter: InMemorySpanExporter
    ) -> None:
        envelope_trace, other = new_trace(), new_trace()
        with spans.event_span("x", _envelope(envelope_trace.trace_id), other):
            pass
        (span,) = exporter.get_finished_spans()
        context = span.get_span_context()
        assert context is not None and span.parent is not None
        assert f"{context.trace_id:032x}" == envelope_trace.trace_id
        assert f"{span.parent.span_id:016x}" != other.span_id

    def test_an_envelope_trace_id_that_is_not_w3c_starts_a_new_trace(
        self, exporter: InMemorySpanExporter
    ) -> None:
        with spans.event_span("x", _envelope("not-a-trace-id"), None):
            pass
        (span,) = exporter.get_finished_spans()
        assert span.parent is None
        assert span.attributes is not None
        assert span.attributes["sdlcflow.trace.id"] == "not-a-trace-id"

    def test_handling_binds_the_events_ids_to_logs(self, exporter: InMemorySpanExporter) -> None:
        trace = new_trace()
        with spans.handling("agent", _envelope(trace.trace_id), trace, agent_id="lint-1"):
            ids = dict(bound())
        assert ids == {
            "trace_id": trace.trace_id,
            "change_id": "c1",
            "task_id": "t1",
            "agent_id": "lint-1",
        }


class TestOff:
    """Without configuration nothing is recorded and headers get fresh span ids, as before."""

    def test_off_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(spans.TRACING_ENV, raising=False)
        assert spans.configure("unit-test") is False
        trace = new_trace()
        with spans.event_span("x", _envelope(trace.trace_id), trace):
            assert active_context(trace.trace_id) is None
            assert trace.child().span_id != trace.span_id

    def test_an_unknown_exporter_names_the_choices(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(spans.TRACING_ENV, "jaeger")
        with pytest.raises(spans.TracingConfigError, match="off, otlp, file:<path>"):
            spans.configure("unit-test")


class TestFileExporter:
    """SDLCFLOW_TRACING=file:<path> writes one JSON object per span (tests across processes)."""

    def test_spans_are_appended_as_json_lines(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "spans.jsonl"
        monkeypatch.setenv(spans.TRACING_ENV, f"file:{path}")
        assert spans.configure("sdlcflow-test") is True
        parent = TraceContext(new_trace().trace_id, "1" * 16)
        try:
            spans.record_span("audit store", _envelope(parent.trace_id), parent, 1_000, 2_000)
        finally:
            spans.shutdown()
        (line,) = path.read_text().splitlines()
        document = json.loads(line)
        assert document["trace_id"] == parent.trace_id
        assert document["parent_span_id"] == "1" * 16
        assert document["service"] == "sdlcflow-test"
        assert (document["start_ns"], document["end_ns"]) == (1_000, 2_000)
