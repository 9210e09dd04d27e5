"""The faust app: one coordinator agent, two tables, one tick timer (`create_app`).

Run it with `sdlcflow run processors` or `faust -A sdlcflow.processors.app worker` (configured
from the environment, see `sdlcflow.processors.config`). Faust traps this design avoids
(DESIGN.md, Known traps):
- the stateful agent runs with concurrency=1;
- at-least-once, not exactly_once: the core drops inputs it has seen, decisions carry
  deterministic ids, and a table value is durable before its decisions are published
  (`storage.py`, the outbox);
- the timer never touches a table: it sends Tick events that the agent processes;
- table values are reassigned, never mutated in place (they are immutable bytes anyway);
- rocksdb (rocksdict) by default, so a restart reads only the changelog's tail (written
  without rocksdb's own write-ahead log: the changelog is the log, `tablestore.py`).

The agent handles inputs in batches (`batching.take_ready`: what arrived while the previous batch
was handled, without a fill window): one table write per repository changed in the batch, then
two round trips to the broker (three when the batch closed a change), in this order
(`CoordinatorShell.handle`):

1. the new table values go to the local store and their changelog records to the broker, and
   the shell waits until every changelog record is confirmed (acks=all): each value carries the
   repository's outbox, so from now on a restarted worker republishes those decisions. A
   repository whose batch closed a change also gets its closed key (`storage.py`), on the same
   partition and confirmed before the main values are written: a crash between the two leaves
   a closed map newer than the value, which loading cuts back, never an older one;
2. the decisions (outbound records) go to the broker, and the shell waits for them too;
3. only then does the batch return, and faust acknowledges its inputs; their offsets are
   committed after that, never before the decisions are on the broker.

A worker killed before 1 completes replays the inputs on the old state and decides again,
with the same derived event ids; killed between 1 and 3, it replays the inputs on the new state,
whose processed ids make the core decide nothing, and the loaded outbox is republished
(duplicates by event id at worst). Dedupe by event id survives the restart because the
processed ids are part of the changelogged state.

The changelog records are produced with the shell's confluent-kafka producer rather than
faust's `table[key] = value` (which sends through faust's aiokafka producer record by record):
the value is put into faust's store directly, the record into the table's changelog topic on
the same partition with the same raw bytes faust would write, and the store's persisted
changelog offset is advanced once the broker confirmed it, as faust does itself. faust reads
these records back on recovery and in standbys like its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import faust
from confluent_kafka.admin import AdminClient
from faust.streams import _current_event
from faust.types import TP, EventT, StreamT, TableT
from faust.types.stores import StoreT

from sdlcflow.core.decider import CoreConfig
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event, Tick
from sdlcflow.infra.topics import ensure_topics
from sdlcflow.observability.decisions import BatchObserver
from sdlcflow.pipelines import known_templates
from sdlcflow.processors import tablestore
from sdlcflow.processors.batching import take_ready
from sdlcflow.processors.collector import freeze_settled_heap
from sdlcflow.processors.config import ProcessorConfig, StoreKind
from sdlcflow.processors.engine import (
    INPUT_TOPICS,
    CoordinatorEngine,
    Inbound,
    Slot,
    tick_repo,
    wall_clock_ms,
)
from sdlcflow.processors.fetching import resume_changelog_reports, stop_fetching_own_changelogs
from sdlcflow.processors.publisher import RecordPublisher
from sdlcflow.processors.storage import (
    ChangeFragments,
    Outbound,
    StoredRepo,
    closed_key,
    closed_record,
    decode_index,
    decode_repo,
    encode_closed,
    encode_index,
    encode_repo,
)
from sdlcflow.processors.trust import CredentialGate, TrustedIssuers
from sdlcflow.streams.deadletter import Header
from sdlcflow.streams.producer import trace_headers
from sdlcflow.streams.topics import TICKS, TopicSpec, task_topic
from sdlcflow.streams.wire import EventCodec
from sdlcflow.tracing import new_trace_id

log = logging.getLogger(__name__)

_WEEK_MS = 7 * 24 * 3600 * 1000
EXIT_CRASHED = 70  # EX_SOFTWARE
# Table values hold a repository's whole state; allow well above Kafka's 1 MiB default.
MAX_TABLE_VALUE_BYTES = 8 * 1024 * 1024


def core_config(config: ProcessorConfig) -> CoreConfig:
    """The pipeline templates (packaged, and the configured directory's) and the lease time."""
    templates = known_templates(config.templates_dir)
    return CoreConfig(templates=templates, lease_ttl_ms=config.lease_ttl_ms)


class CoordinatorShell:
    """Connects the engine to faust: tables in, producer out, tick timer."""

    def __init__(
        self,
        app: faust.App,
        config: ProcessorConfig,
        states: TableT[bytes, bytes],
        index: TableT[bytes, bytes],
    ) -> None:
        self.app = app
        self.config = config
        self.states = states
        self.index = index
        core = core_config(config)
        self.engine = CoordinatorEngine(
            core,
            CredentialGate(
                TrustedIssuers(config.trusted_issuers),
                max_clock_skew_ms=config.max_clock_skew_ms,
                credential_grace_ms=config.credential_grace_ms,
            ),
            EventCodec(),
            group=config.app_id,
            repos=config.repos,
        )
        self.publisher = RecordPublisher(
            config.bootstrap,
            client_id=f"{config.app_id}-coordinator",
            partitions=config.partitions,
            max_record_bytes=MAX_TABLE_VALUE_BYTES + 65_536,
        )
        self.actor = Actor(ActorKind.COORDINATOR, config.app_id)
        self._tick_sequence = 0
        self._events: dict[int, EventT[bytes]] = {}
        self.observer = BatchObserver("processors")
        self.fragments = ChangeFragments()

    # ---------------------------------------------------------------- the agent's batch

    async def handle(self, events: Sequence[EventT[bytes]]) -> None:
        """Process one batch: decide, write tables, flush the changelog, publish, then ack."""
        self._events = {event.message.partition: event for event in events}
        pending = [_inbound(event) for event in events]
        started = time.perf_counter()
        while pending:
            result = self.engine.process(pending, self._load, self._load_index)
            if result.slots or result.index:
                # the changelog holds the outbox before any decision is published, and a
                # repository's closed map before the value that names it
                closed = self._write_closed(result.slots.values())
                if closed:
                    await self._persist(closed)
                await self._persist(self._write(result.slots.values(), result.index))
            await self.publisher.publish(result.outbound)
            self.engine.commit(result)
            elapsed, started = time.perf_counter() - started, time.perf_counter()
            self.observer.observe(result.emitted, result.consumed, result.dead_letters, elapsed)
            pending = pending[result.consumed :]

    def _load(self, repo: str, partition: int) -> StoredRepo | None:
        key = repo.encode("utf-8")
        with self._on_partition(partition):
            data = self.states.get(key)
            closed = None if data is None else self.states.get(closed_key(key))
        return None if data is None else decode_repo(data, closed)

    def _load_index(self, partition: int) -> frozenset[str]:
        with self._on_partition(partition):
            return decode_index(self.index.get(str(partition).encode("ascii")))

    def _write_closed(self, slots: Iterable[Slot]) -> list[Outbound]:
        """Put the closed maps that changed into the state table's store; return their changelog
        records (on each repository's partition, like its main value)."""
        return [
            self._put(
                self.states,
                closed_key(slot.repo.encode("utf-8")),
                encode_closed(closed_record(slot.stored_closed, slot.state.closed)),
                slot.partition,
            )
            for slot in slots
            if slot.closed_changed
        ]

    def _write(self, slots: Iterable[Slot], index: dict[int, frozenset[str]]) -> list[Outbound]:
        """Put the new values into the tables' stores; return their changelog records."""
        changelog = [
            self._put(
                self.states,
                slot.repo.encode("utf-8"),
                encode_repo(StoredRepo(slot.state, tuple(slot.outbox)), self.fragments),
                slot.partition,
            )
            for slot in slots
        ]
        for partition, repos in index.items():
            key = str(partition).encode("ascii")
            changelog.append(self._put(self.index, key, encode_index(repos), partition))
        return changelog

    def _put(
        self, table: TableT[bytes, bytes], key: bytes, value: bytes, partition: int
    ) -> Outbound:
        """Put `value` into the table's store under `key`; return its changelog record, for the
        same partition with the same bytes."""
        with self._on_partition(partition):
            table.data[key] = value
        return Outbound(table.changelog_topic.get_topic_name(), key, value, (), partition)

    async def _persist(self, changelog: Sequence[Outbound]) -> None:
        """Produce the changelog records, wait for the broker, then record in each store how far
        its changelog is persisted (faust's recovery reads on from there)."""
        offsets = await self.publisher.publish(changelog)
        stores = {
            self.states.changelog_topic.get_topic_name(): self.states,
            self.index.changelog_topic.get_topic_name(): self.index,
        }
        for (topic, partition), offset in offsets.items():
            store = cast(StoreT[bytes, bytes], stores[topic].data)
            store.set_persisted_offset(TP(topic, partition), offset)

    @contextmanager
    def _on_partition(self, partition: int) -> Iterator[None]:
        """Make faust's tables read and write `partition`.

        faust picks a table's store and changelog partition from the stream's current event;
        a batch mixes partitions, so each repository's access runs as if its own event were
        current (every repository's events live on one partition: they are keyed by repo).
        """
        event = self._events[partition]
        token = _current_event.set(weakref.ref(event))
        try:
            yield
        finally:
            _current_event.reset(token)

    # ---------------------------------------------------------------- ticks

    def tick(self) -> None:
        """Send a Tick to each ticks partition this worker actively owns."""
        now = wall_clock_ms()
        actives = self.app.assignor.assigned_actives()
        owned = sorted(tp.partition for tp in actives if tp.topic == TICKS)
        records = []
        for partition in owned:
            known = self.engine._index.get(partition)
            if known is not None and not known:
                continue  # no live change on this partition: nothing can expire
            self._tick_sequence += 1
            event = self._tick_event(partition, now)
            value = self.engine.codec.encode(event)
            key = event.envelope.repo.encode("utf-8")
            records.append(Outbound(TICKS, key, value, tuple(trace_headers(event)), partition))
        if records:
            self.publisher.send_nowait(records)

    def _tick_event(self, partition: int, now: int) -> Event:
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            type="Tick",
            occurred_at=now,
            repo=tick_repo(partition),
            change_id=None,
            task_id=None,
            trace_id=new_trace_id(),
            causation_id=None,
            actor=self.actor,
        )
        return Event(envelope, Tick(sequence=self._tick_sequence))


def _inbound(event: EventT[bytes]) -> Inbound:
    message = event.message
    raw: Any = message.headers or []
    pairs: Any = raw.items() if isinstance(raw, dict) else raw
    return Inbound(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple(Header(str(name), _header_bytes(value)) for name, value in pairs),
        timestamp=int(message.timestamp * 1000) if message.timestamp else None,
    )


def _header_bytes(value: Any) -> bytes | None:
    return value.encode() if isinstance(value, str) else value  # type: ignore[no-any-return]


class CoordinatorApp(faust.App):
    """The faust app, creating its changelog and task topics before the consumer joins.

    faust declares changelog topics while the consumer joins its group; the group's metadata
    snapshot may then miss them, and the first table write fails its partition-count check.
    Creating them first avoids that race.
    """

    sdlcflow_config: ProcessorConfig

    async def on_first_start(self) -> None:
        await super().on_first_start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, prepare_topics, self.sdlcflow_config)


def prepare_topics(config: ProcessorConfig) -> None:
    """Create the tables' changelog topics and every known capability's task topic."""
    compacted = {
        "cleanup.policy": "compact",
        "max.message.bytes": str(MAX_TABLE_VALUE_BYTES + 65_536),
    }
    specs = [
        TopicSpec(config.changelog_topic(table), config.partitions, dict(compacted))
        for table in (config.state_table, config.index_table)
    ]
    templates = core_config(config).templates.values()
    capabilities = {step.capability for template in templates for step in template.steps}
    specs += [
        TopicSpec(task_topic(cap), config.partitions, {"retention.ms": str(_WEEK_MS)})
        for cap in sorted(capabilities)
    ]
    ensure_topics(AdminClient({"bootstrap.servers": config.bootstrap}), specs)


#: How long the group waits for a silent worker before its partitions move (faust: 60 s).
SESSION_TIMEOUT_S = 10.0


def create_app(config: ProcessorConfig) -> faust.App:
    """The faust app for one configuration (`sdlcflow.processors.app` uses the environment)."""
    store = f"{tablestore.SCHEME}://" if config.store is StoreKind.ROCKSDB else "memory://"
    app = CoordinatorApp(
        config.app_id,
        broker=f"kafka://{config.bootstrap}",
        store=store,
        datadir=str(config.data_dir / config.app_id),
        topic_partitions=config.partitions,
        # at-least-once: exactly_once is unreliable in faust (DESIGN.md); the core is idempotent
        processing_guarantee="at_least_once",
        # a new coordinator group must see every input ever sent, not only new ones
        consumer_auto_offset_reset=config.offset_reset,
        # our codec decodes; faust hands over raw bytes
        key_serializer="raw",
        value_serializer="raw",
        # changelog writes must reach every in-sync replica, like the decisions they back
        producer_acks=-1,
        producer_max_request_size=MAX_TABLE_VALUE_BYTES + 65_536,
        # no HTTP endpoint: several workers share one host and we expose no faust views
        web_enabled=False,
        # a worker killed -9 and restarted joins as a new member: the group cannot rebalance
        # before the dead member's session expires, and faust's 60 s default stalled the
        # decisions a minute after every crash (chaos kill-coordinator); heartbeats stay 3 s
        broker_session_timeout=SESSION_TIMEOUT_S,
    )
    inputs = app.topic(
        *INPUT_TOPICS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=config.partitions,
    )
    changelog_configs = {"max.message.bytes": str(MAX_TABLE_VALUE_BYTES + 65_536)}
    states = app.Table(
        config.state_table,
        default=None,
        partitions=config.partitions,
        key_type=bytes,
        value_type=bytes,
        extra_topic_configs=changelog_configs,
        help="repository -> its RepoState and outbox (storage.py)",
    )
    index = app.Table(
        config.index_table,
        default=None,
        partitions=config.partitions,
        key_type=bytes,
        value_type=bytes,
        help="partition -> repositories with live changes (the tick index)",
    )
    app.sdlcflow_config = config
    shell = CoordinatorShell(app, config, states, index)
    app.coordinator_shell = shell  # type: ignore[attr-defined]

    @app.agent(inputs, concurrency=1)  # stateful: never more (DESIGN.md, Known traps)
    async def coordinate(stream: StreamT[bytes]) -> None:
        async for events in _batches(stream, config):
            try:
                await shell.handle(events)
            except Exception:
                # faust would ack the batch and keep running without this agent; dying
                # instead leaves the offsets uncommitted for the restarted worker
                log.critical("coordinator failed on a batch; exiting", exc_info=True)
                os._exit(EXIT_CRASHED)

    @app.timer(interval=config.tick_interval_ms / 1000)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        shell.tick()

    async def forget(_app: Any, *_args: Any, **_kwargs: Any) -> None:
        shell.engine.forget()  # another worker may have changed what we had in memory
        shell.fragments.clear()

    app.on_partitions_revoked.connect(forget)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(forget)  # type: ignore[arg-type]
    app.on_partitions_revoked.connect(resume_changelog_reports)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(resume_changelog_reports)  # type: ignore[arg-type]
    # once recovery is done: no fetches of our own changelogs, a frozen start-up heap
    app.on_rebalance_complete.connect(stop_fetching_own_changelogs)
    app.on_rebalance_complete.connect(freeze_settled_heap)

    return app


def _batches(stream: StreamT[bytes], config: ProcessorConfig) -> AsyncIterator[list[Any]]:
    if config.batch_within_ms == 0:
        return take_ready(stream, config.batch_max)
    within = config.batch_within_ms / 1000
    return stream.take_events(config.batch_max, within=within)  # type: ignore[attr-defined,no-any-return]
