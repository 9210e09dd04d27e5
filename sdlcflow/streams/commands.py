"""`sdlcflow submit` and `sdlcflow events tail`: put a change request in, watch events go by."""

from __future__ import annotations

import dataclasses
import enum
import time
from pathlib import Path
from typing import Any

import click
import orjson
import yaml
from confluent_kafka import Consumer, Message, TopicPartition
from rich.console import Console
from rich.markup import escape

from sdlcflow.core.events import Event
from sdlcflow.errors import SdlcflowError
from sdlcflow.pipelines import DEFAULT_PIPELINE, check_pipeline, configured_directory
from sdlcflow.streams.consumer import Delivery, Refusal, decode_message, unique_group
from sdlcflow.streams.deadletter import MessageDeadLettered
from sdlcflow.streams.producer import ChangeRequestProducer, ChangeSpec, EventPublisher
from sdlcflow.streams.transient import DEADLINE_S, watermarks
from sdlcflow.streams.wire import EventCodec

_BOOTSTRAP = click.option(
    "--bootstrap",
    envvar="SDLCFLOW_KAFKA_BOOTSTRAP",
    default="127.0.0.1:9092",
    show_default=True,
    help="Kafka bootstrap servers [env SDLCFLOW_KAFKA_BOOTSTRAP].",
)
_JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (one object per line) for scripts."
)


def _template_name(pipeline: str) -> str:
    """A pipeline given as a file is named by its `name:` key (or its file stem)."""
    path = Path(pipeline)
    if not path.is_file():
        return pipeline
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read pipeline file {path}: {exc}") from exc
    if isinstance(document, dict) and isinstance(document.get("name"), str):
        return str(document["name"])
    return path.stem


def _known_pipeline(name: str) -> str:
    """`name` if the coordinator would know it (the same templates directory assumed)."""
    try:
        return check_pipeline(name, configured_directory())
    except SdlcflowError as exc:
        raise click.BadParameter(str(exc), param_hint="'--pipeline'") from exc


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Accept both repeated options and comma-separated values."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


@click.command()
@click.option(
    "--repo",
    required=True,
    envvar="SDLCFLOW_REPO",
    help="Repository, e.g. acme/web [env SDLCFLOW_REPO].",
)
@click.option(
    "--base", "base_sha", required=True, help="Git SHA of the base the change applies to."
)
@click.option("--head", "head_sha", required=True, help="Git SHA of the change's head.")
@click.option("--kind", required=True, help="Kind of change, e.g. refactor, dependency-update.")
@click.option(
    "--pipeline",
    default=DEFAULT_PIPELINE,
    show_default=True,
    envvar="SDLCFLOW_PIPELINE",
    help="Pipeline template NAME, or a template FILE (its `name:` is used); it must be one the "
    "coordinator knows: packaged, or in $SDLCFLOW_TEMPLATES_DIR [env SDLCFLOW_PIPELINE].",
)
@click.option(
    "--lockfile-digest", default="", help="Digest of the dependency lockfile at the head."
)
@click.option("--title", default="", help="Human-readable title of the change.")
@click.option(
    "--path",
    "paths",
    multiple=True,
    help="Path (glob) the change touches; repeatable or comma-separated.",
)
@click.option(
    "--label", "labels", multiple=True, help="Label of the change; repeatable or comma-separated."
)
@click.option(
    "--resource", "resources", multiple=True, help="Resource the change touches; repeatable."
)
@click.option(
    "--environment", "environments", multiple=True, help="Environment to promote to; repeatable."
)
@click.option(
    "--actor",
    "actor_id",
    default="sdlcflow-cli",
    show_default=True,
    envvar="SDLCFLOW_ACTOR",
    help="Producer identity recorded on the event [env SDLCFLOW_ACTOR].",
)
@_BOOTSTRAP
@_JSON
def submit(
    repo: str,
    base_sha: str,
    head_sha: str,
    kind: str,
    pipeline: str,
    lockfile_digest: str,
    title: str,
    paths: tuple[str, ...],
    labels: tuple[str, ...],
    resources: tuple[str, ...],
    environments: tuple[str, ...],
    actor_id: str,
    bootstrap: str,
    as_json: bool,
) -> None:
    """Submit a change request; prints its change id and trace id once Kafka confirmed it."""
    spec = ChangeSpec(
        repo=repo,
        base_sha=base_sha,
        head_sha=head_sha,
        kind=kind,
        template=_known_pipeline(_template_name(pipeline)),
        lockfile_digest=lockfile_digest,
        title=title,
        paths=_split(paths),
        labels=_split(labels),
        resources=_split(resources),
        environments=_split(environments),
    )
    try:
        publisher = EventPublisher(bootstrap)
        submission = ChangeRequestProducer(publisher, actor_id=actor_id).submit(spec)
    except SdlcflowError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(orjson.dumps(dataclasses.asdict(submission)).decode())
        return
    console = Console()
    console.print(f"[bold green]submitted[/] change [cyan]{submission.change_id}[/]")
    console.print(f"  trace    [magenta]{submission.trace_id}[/]")
    console.print(f"  event    {submission.event_id}")


@click.group()
def events() -> None:
    """Watch the events on sdlcflow's topics."""


@events.command()
@click.argument("topic")
@_BOOTSTRAP
@_JSON
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset, not the end.")
@click.option(
    "--max", "max_messages", type=click.IntRange(min=1), default=None, help="Stop after N messages."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after S seconds without a message (default: run until Ctrl-C).",
)
@click.option("--repo", default=None, help="Show only messages keyed by this repository.")
def tail(
    topic: str,
    bootstrap: str,
    as_json: bool,
    from_beginning: bool,
    max_messages: int | None,
    timeout: float | None,
    repo: str | None,
) -> None:
    """Decode and print live events of TOPIC, one line each (dead letters with their reason).

    Prints "tailing TOPIC" on stderr once it reads, so scripts know when to start producing.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # a private group: tailing never moves anyone's offsets, and commits nothing
            "group.id": unique_group("sdlcflow-tail"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    ready = _Ready(consumer, topic, from_beginning)
    consumer.subscribe([topic], on_assign=ready.on_assign)
    codec = EventCodec()
    console = Console(highlight=False, soft_wrap=True)
    key = repo.encode("utf-8") if repo is not None else None
    shown = 0
    last = time.monotonic()
    try:
        while max_messages is None or shown < max_messages:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                if timeout is not None and time.monotonic() - last > timeout:
                    break
                continue
            last = time.monotonic()
            if key is not None and message.key() != key:
                continue
            shown += 1
            _show(decode_message(codec, message, "tail"), message, console, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if max_messages is not None and shown < max_messages:
        raise click.ClickException(f"saw {shown} of {max_messages} messages before the timeout")


class _Ready:
    """Pins "latest" to the end offsets at assignment, then says so on stderr.

    Resolving the end explicitly (rather than leaving it to the first fetch) means every message
    produced after the "tailing" line is shown.
    """

    def __init__(self, consumer: Consumer, topic: str, from_beginning: bool) -> None:
        self.consumer = consumer
        self.topic = topic
        self.from_beginning = from_beginning

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self.from_beginning:
            deadline = time.monotonic() + DEADLINE_S
            for partition in partitions:
                _low, high = watermarks(consumer, partition, deadline=deadline)
                partition.offset = high
        consumer.assign(partitions)
        where = "the beginning" if self.from_beginning else "the end"
        click.echo(
            f"tailing {self.topic} ({len(partitions)} partitions) from {where}; Ctrl-C to stop",
            err=True,
        )


def _show(outcome: Delivery | Refusal, message: Message, console: Console, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(_as_json(outcome), default=_json_default).decode())
    elif isinstance(outcome, Refusal):
        letter = outcome.letter
        console.print(
            f"[bold red]UNDECODABLE[/] {letter.topic}[{letter.partition}]@{letter.offset} "
            f"[red]{letter.reason}[/]: {escape(letter.detail)}"
        )
    else:
        console.print(_line(outcome.event, message))


def _line(event: Event, message: Message) -> str:
    envelope = event.envelope
    stamp = time.strftime("%H:%M:%S", time.gmtime(envelope.occurred_at / 1000))
    origin = f"{message.partition()}@{message.offset()}"
    payload = event.payload
    if isinstance(payload, MessageDeadLettered):
        return (
            f"[dim]{stamp} {origin}[/] [bold red]DEAD-LETTER[/] [red]{payload.reason}[/] "
            f"{payload.topic}[{payload.partition}]@{payload.offset}: {escape(payload.detail)}"
        )
    fields = ", ".join(
        f"{f.name}={_short(value)}"
        for f in dataclasses.fields(payload)
        if (value := getattr(payload, f.name)) not in (None, "", ())
    )
    ids = " ".join(
        f"{name}={value}"
        for name, value in (("change", envelope.change_id), ("task", envelope.task_id))
        if value
    )
    return (
        f"[dim]{stamp} {origin}[/] [bold cyan]{envelope.type}[/] [green]{escape(envelope.repo)}[/] "
        f"{escape(ids)} [dim]by {envelope.actor.kind.value}:{escape(envelope.actor.id)} "
        f"trace={envelope.trace_id[:8]}[/] {escape(fields)}"
    )


def _short(value: Any) -> str:
    text = value.value if isinstance(value, enum.Enum) else str(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _as_json(outcome: Delivery | Refusal) -> dict[str, Any]:
    if isinstance(outcome, Refusal):
        return {"undecodable": True, **dataclasses.asdict(outcome.letter)}
    event = outcome.event
    return {
        "topic": outcome.topic,
        "partition": outcome.partition,
        "offset": outcome.offset,
        "envelope": dataclasses.asdict(event.envelope),
        "payload": dataclasses.asdict(event.payload),  # type: ignore[call-overload]
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
