"""The CLI documents every option, and the producer SDK builds change requests at the edge."""

from __future__ import annotations

import copy
import io
import uuid
from pathlib import Path
from typing import Any, cast

import click
import pytest
from fastavro import schemaless_writer

from sdlcflow.core.events import ActorKind, ChangeRequested, Event
from sdlcflow.pipelines import DEFAULT_PIPELINE
from sdlcflow.streams.codec import HEADER, Codec
from sdlcflow.streams.commands import _split, _template_name, events, submit
from sdlcflow.streams.producer import ChangeRequestProducer, ChangeSpec, EventPublisher
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.schema_store import ContractSchema, current_store
from sdlcflow.streams.testing import sample_event
from sdlcflow.streams.topics import CHANGE_REQUESTS
from sdlcflow.streams.wire import EventCodec, record_name
from sdlcflow.tracing import is_trace_id


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


class TestCommandHelp:
    """Every option of submit and events tail says what it does."""

    @pytest.mark.parametrize("command", [submit, cast(click.Group, events).commands["tail"]])
    def test_every_option_has_help(self, command: click.Command) -> None:
        undocumented = [o.name for o in _options(command) if not o.help]
        assert not undocumented

    def test_kafka_address_falls_back_to_the_environment(self) -> None:
        bootstrap = next(o for o in _options(submit) if o.name == "bootstrap")
        assert bootstrap.envvar == "SDLCFLOW_KAFKA_BOOTSTRAP"


class TestSubmitArguments:
    """Pipelines given as files are named by their `name:`; lists accept commas."""

    def test_a_pipeline_name_is_kept(self) -> None:
        assert _template_name("code-change") == "code-change"

    def test_a_pipeline_file_is_named_by_its_name_key(self, tmp_path: Path) -> None:
        path = tmp_path / "fast.yaml"
        path.write_text("name: fast-lane\nsteps: []\n")
        assert _template_name(str(path)) == "fast-lane"

    def test_a_pipeline_file_without_a_name_is_named_by_its_stem(self, tmp_path: Path) -> None:
        path = tmp_path / "nightly.yaml"
        path.write_text("steps: []\n")
        assert _template_name(str(path)) == "nightly"

    def test_repeated_and_comma_separated_values_are_merged(self) -> None:
        assert _split(("a,b", " c ", "")) == ("a", "b", "c")


class _RecordingPublisher:
    """Stands in for EventPublisher: records what would be sent and that it was flushed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Event, str | None]] = []
        self.flushed = 0

    def publish(self, topic: str, event: Event, *, trace: Any = None) -> None:
        self.sent.append((topic, event, None if trace is None else trace.traceparent()))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushed += 1


class TestChangeRequestProducer:
    """submit() publishes one ChangeRequested with fresh ids, waits for it, returns the ids."""

    def test_submit_publishes_a_change_request_and_returns_its_ids(self) -> None:
        publisher = _RecordingPublisher()
        producer = ChangeRequestProducer(cast(EventPublisher, publisher), actor_id="ci")
        spec = ChangeSpec(repo="acme/web", base_sha="a" * 40, head_sha="b" * 40, kind="refactor")
        submission = producer.submit(spec)
        ((topic, event, traceparent),) = publisher.sent
        assert topic == CHANGE_REQUESTS
        assert publisher.flushed == 1
        envelope = event.envelope
        assert (envelope.type, envelope.repo, envelope.actor.kind) == (
            "ChangeRequested",
            "acme/web",
            ActorKind.PRODUCER,
        )
        assert envelope.event_id == submission.event_id
        assert uuid.UUID(envelope.event_id).version == 4
        assert envelope.change_id == submission.change_id
        assert envelope.trace_id == submission.trace_id and is_trace_id(submission.trace_id)
        assert traceparent == submission.traceparent
        assert isinstance(event.payload, ChangeRequested)
        assert (event.payload.head_sha, event.payload.template) == ("b" * 40, DEFAULT_PIPELINE)

    def test_each_submission_gets_new_ids(self) -> None:
        producer = ChangeRequestProducer(cast(EventPublisher, _RecordingPublisher()))
        spec = ChangeSpec(repo="acme/web", base_sha="a", head_sha="b", kind="k")
        first, second = producer.submit(spec), producer.submit(spec)
        assert len({first.event_id, second.event_id}) == 2
        assert len({first.change_id, second.change_id}) == 2
        assert len({first.trace_id, second.trace_id}) == 2


class TestOlderWriters:
    """Frames written with an older schema are resolved into today's dataclasses."""

    def test_a_field_added_later_takes_its_default(self) -> None:
        codec = EventCodec(Codec(registry=LocalSchemaRegistry.default()))
        schema = copy.deepcopy(dict(current_store().get(record_name("ChangeRequested")).schema))
        payload = schema["fields"][1]["type"]
        payload["fields"] = [f for f in payload["fields"] if f["name"] != "environments"]
        older = ContractSchema.from_schema(schema)
        event = sample_event("ChangeRequested")
        datum = codec.codec.decode(codec.encode(event)).datum
        del datum["payload"]["environments"]
        buffer = io.BytesIO()
        buffer.write(HEADER.pack(0, codec.codec.registry.id_for(older)))
        schemaless_writer(buffer, older.wire, datum)
        decoded = codec.decode(buffer.getvalue())
        assert isinstance(decoded.payload, ChangeRequested)
        assert decoded.payload.environments == ()
        assert decoded.envelope == event.envelope
