"""The coordinator shell's logic, apart from faust: raw records in, records to produce out.

`CoordinatorEngine.process` takes a batch of raw input records (any mix of change requests,
agent events and ticks, possibly from several partitions), decodes and authenticates each,
runs the pure core on the repository's state and returns what the faust agent must do:
records to produce (decisions, dead letters, republished outboxes), table values to write
and tick-index changes. Keeping this free of faust makes it testable with plain data and
lets the benchmark measure the shell's own cost against the core alone.

Ticks. Each worker's timer sends one Tick per partition it owns, keyed and dated by the
worker, with the repo `~partition/<n>`. The engine fans it out to the repositories of that
partition that have live changes — a per-partition index kept in a second table, updated
only when a repository gains its first or loses its last live change — and runs the core
only for those for which a Tick can change something (`next_due`: a lease expiry, a retry,
a lapsed offer or an approval timeout), so an idle repository costs nothing per tick.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sdlcflow.core import events as ev
from sdlcflow.core.decider import COORDINATOR as COORDINATOR_ACTOR
from sdlcflow.core.decider import CoreConfig, derive_id, handle
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.core.fold import evolve
from sdlcflow.core.state import RepoState, TaskState, TaskStatus
from sdlcflow.observability.spans import handling
from sdlcflow.processors.routing import topics_for
from sdlcflow.processors.storage import Outbound, StoredRepo
from sdlcflow.processors.trust import CredentialGate, Refusal
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.deadletter import (
    HANDLER_INVALID,
    Header,
    MessageDeadLettered,
    dead_letter_event,
    fit_for_dead_letter,
)
from sdlcflow.streams.producer import EVENT_TYPE_HEADER, trace_headers
from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS, DEAD_LETTER, TICKS
from sdlcflow.streams.wire import EventCodec
from sdlcflow.tracing import (
    TRACEPARENT_HEADER,
    TraceContext,
    TraceContextError,
    context_for_trace,
    parse_traceparent,
)

log = logging.getLogger(__name__)

TICK_REPO_PREFIX = "~partition/"
HANDLER_FAILED = "handler-failed"
# A repository's outbox (decisions of one batch, kept in its table value) stays well under
# Kafka's 1 MiB message limit; a batch stops early for a repository that would exceed it.
MAX_OUTBOX_BYTES = 256 * 1024

# Which input types each input topic carries.
TOPIC_INPUTS: dict[str, frozenset[str]] = {
    CHANGE_REQUESTS: frozenset({"ChangeRequested", "ChangeUpdated", "ChangeCancelled"}),
    AGENT_EVENTS: frozenset(
        {
            "LeaseRequested",
            "LeaseHeartbeat",
            "LeaseReleased",
            "TaskSucceeded",
            "TaskFailed",
            "ApprovalSigned",
            "ApprovalRejected",
            "CredentialRevoked",
            "PolicyModeChanged",
        }
    ),
    TICKS: frozenset({"Tick"}),
}
INPUT_TOPICS: tuple[str, ...] = (CHANGE_REQUESTS, AGENT_EVENTS, TICKS)

Loader = Callable[[str, int], StoredRepo | None]
IndexLoader = Callable[[int], frozenset[str]]
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def tick_repo(partition: int) -> str:
    """The repo field (and key) of the timer's Tick for one partition."""
    return f"{TICK_REPO_PREFIX}{partition}"


def next_due(state: RepoState, config: CoreConfig) -> int | None:
    """The earliest time a Tick can change this state: a lease expiry, a retry falling due, an
    offer left untaken, an approval waiting past its timeout.

    Mirrors what the core's Tick handler looks at (never later than it; a unit test holds the
    two together).
    """
    due: int | None = None
    for change in state.changes.values():
        for task in change.tasks.values():
            when = _task_due(task, config)
            if when is not None and (due is None or when < due):
                due = when
    return due


def _task_due(task: TaskState, config: CoreConfig) -> int | None:
    if task.lease is not None:
        return task.lease.expires_at
    status = task.status
    if status is TaskStatus.RETRY_WAIT:
        return task.retry_due or 0
    if status is TaskStatus.OFFERED:
        # a gated task waiting for resources is exempt in the core; an early tick is harmless
        return task.offered_at + config.offer_timeout_ms
    if status is TaskStatus.AWAITING_APPROVAL and task.requested_at > 0:
        since = task.escalated_at if task.escalated_to else task.requested_at
        return since + task.contract.timeout_ms
    return None


@dataclass(frozen=True)
class Inbound:
    """One raw record from an input topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp: int | None = None


@dataclass
class Slot:
    """A repository changed by the batch: what to write to the table, on which partition."""

    repo: str
    partition: int
    state: RepoState
    # the closed map the table's closed key holds (by identity; None: none written yet)
    stored_closed: Mapping[str, str] | None = None
    outbox: list[Outbound] = field(default_factory=list)
    outbox_bytes: int = 0

    @property
    def closed_changed(self) -> bool:
        """Whether the closed key must be written: `closed` is a new object only when a change
        closed (the core shares it otherwise), and it is most of a long-lived repository's
        value (`storage.py`)."""
        return self.state.closed is not self.stored_closed


@dataclass
class BatchResult:
    """What the shell must do for one batch, in this order: write `slots` and `index` to the
    tables, flush the changelog, produce `outbound`, then acknowledge `consumed` inputs."""

    consumed: int = 0
    outbound: list[Outbound] = field(default_factory=list)
    slots: dict[str, Slot] = field(default_factory=dict)
    index: dict[int, frozenset[str]] = field(default_factory=dict)
    emitted: list[Event] = field(default_factory=list)  # the decisions, for metrics
    decisions: int = 0
    grants: int = 0
    dead_letters: int = 0
    rejected: int = 0


class CoordinatorEngine:
    """Decodes, authenticates and decides; keeps decoded states of the partitions it serves.

    Args:
        core: templates and lease timing for the pure core.
        gate: credential and signature checks.
        codec: the wire codec.
        group: the consumer group (faust app id), recorded on dead letters.
        clock: milliseconds since the epoch (the shell's clock; the core never reads one).
        repos: glob patterns of the repositories served; others are skipped unread (empty: all).
    """

    def __init__(
        self,
        core: CoreConfig,
        gate: CredentialGate,
        codec: EventCodec,
        *,
        group: str,
        clock: Clock = wall_clock_ms,
        repos: Sequence[str] = (),
    ) -> None:
        self.core = core
        self.gate = gate
        self.codec = codec
        self.group = group
        self.clock = clock
        self.actor = Actor(ActorKind.COORDINATOR, group)
        self.repos = tuple(repos)
        self._states: dict[str, RepoState] = {}
        self._partitions: dict[str, int] = {}
        self._index: dict[int, frozenset[str]] = {}
        self._due: dict[str, tuple[RepoState, int | None]] = {}
        # per repository, the closed map its table's closed key holds (loaded or written)
        self._closed: dict[str, Mapping[str, str]] = {}

    # ---------------------------------------------------------------- cache

    def forget(self) -> None:
        """Drop every cached state (on rebalance: another worker may have changed them)."""
        self._states.clear()
        self._partitions.clear()
        self._index.clear()
        self._due.clear()
        self._closed.clear()

    def due(self, repo: str, state: RepoState) -> int | None:
        """`next_due(state, core)`, computed once per state: every tick asks it of every live
        repository of its partition, and most of them have not changed since the last tick."""
        known = self._due.get(repo)
        if known is not None and known[0] is state:
            return known[1]
        due = next_due(state, self.core)
        self._due[repo] = (state, due)
        return due

    def commit(self, result: BatchResult) -> None:
        """Remember the batch's states once the shell has written and published them."""
        for slot in result.slots.values():
            self._states[slot.repo] = slot.state
            self._partitions[slot.repo] = slot.partition
            self._closed[slot.repo] = slot.state.closed
        self._index.update(result.index)

    # ---------------------------------------------------------------- batch

    def process(
        self, batch: Sequence[Inbound], load: Loader, load_index: IndexLoader
    ) -> BatchResult:
        """Handle inputs in order until done or a repository's outbox is full."""
        run = _BatchRun(self, load, load_index)
        for record in batch:
            if run.full:
                break
            run.one(record)
            run.result.consumed += 1
        return run.result

    def encode_decision(
        self, decision: Event, trace: TraceContext | None, parents: dict[str, bytes] | None = None
    ) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
        """The decision's value and headers. The decisions of one input are children of the
        one span that handled it, so they share its traceparent (W3C: the parent id names the
        producing span); `parents` keeps it per trace id for the input's decisions."""
        value = self.codec.encode(decision)
        trace_id = decision.envelope.trace_id
        parent = None if parents is None else parents.get(trace_id)
        if parent is None:
            context = trace.child() if trace is not None else context_for_trace(trace_id)
            parent = context.traceparent().encode("ascii")
            if parents is not None:
                parents[trace_id] = parent
        return value, (
            (TRACEPARENT_HEADER, parent),
            (EVENT_TYPE_HEADER, decision.envelope.type.encode("utf-8")),
        )

    def dead_letter(
        self, record: Inbound, reason: str, detail: str, schema_id: int | None
    ) -> Outbound:
        letter = MessageDeadLettered(
            reason=reason,
            detail=detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            consumer_group=self.group,
            timestamp=record.timestamp,
            key=record.key,
            value=record.value,
            headers=record.headers,
            schema_id=schema_id,
        )
        event = dead_letter_event(
            fit_for_dead_letter(letter), actor=self.actor, occurred_at=self.clock()
        )
        return Outbound(
            DEAD_LETTER, record.key, self.codec.encode(event), tuple(trace_headers(event))
        )


class _BatchRun:
    """The working state of one `process` call."""

    def __init__(self, engine: CoordinatorEngine, load: Loader, load_index: IndexLoader) -> None:
        self.engine = engine
        self.load = load
        self.load_index = load_index
        self.result = BatchResult()
        self.full = False
        self.now = engine.clock()

    # ---------------------------------------------------------------- state access

    def state(self, repo: str, partition: int) -> RepoState:
        slot = self.result.slots.get(repo)
        if slot is not None:
            return slot.state
        cached = self.engine._states.get(repo)
        if cached is not None:
            return cached
        stored = self.load(repo, partition)
        if stored is None:
            stored = StoredRepo(RepoState(repo=repo))
        if stored.closed_apart:
            self.engine._closed[repo] = stored.state.closed
        else:
            self.engine._closed.pop(repo, None)
        if stored.outbox:
            # not in memory: its last decisions may never have been published (storage.py)
            slot = self._slot(repo, partition, stored.state)
            for record in stored.outbox:
                self._emit(slot, record)
        else:
            self.engine._states[repo] = stored.state
            self.engine._partitions[repo] = partition
        return stored.state

    def index(self, partition: int) -> frozenset[str]:
        if partition in self.result.index:
            return self.result.index[partition]
        cached = self.engine._index.get(partition)
        if cached is None:
            cached = self.load_index(partition)
            self.engine._index[partition] = cached
        return cached

    def _slot(self, repo: str, partition: int, state: RepoState) -> Slot:
        slot = self.result.slots.get(repo)
        if slot is None:
            stored_closed = self.engine._closed.get(repo)
            slot = self.result.slots[repo] = Slot(repo, partition, state, stored_closed)
        return slot

    def _emit(self, slot: Slot, record: Outbound) -> None:
        slot.outbox.append(record)
        slot.outbox_bytes += len(record.value) + 64
        self.result.outbound.append(record)
        if slot.outbox_bytes > MAX_OUTBOX_BYTES:
            self.full = True

    # ---------------------------------------------------------------- one input

    def one(self, record: Inbound) -> None:
        if self.engine.repos and not self._served(record.key):
            return
        try:
            event = self.engine.codec.decode(record.value)
        except DecodeError as exc:
            self._dead_letter(record, exc.reason.value, exc.detail, exc.schema_id)
            return
        problem = self._misrouted(record, event)
        if problem is not None:
            self._dead_letter(record, HANDLER_INVALID, problem, None)
            return
        admitted = self.engine.gate.admit(event, self.now, from_timer=record.topic == TICKS)
        if isinstance(admitted, Refusal):
            self._refuse(record, event, admitted)
            return
        trace = _trace_of(record.headers, event.envelope.trace_id)
        if isinstance(event.payload, ev.Tick) and event.envelope.repo.startswith(TICK_REPO_PREFIX):
            self._tick(record, admitted, trace)
        else:
            with handling(f"coordinator {event.envelope.type}", event.envelope, trace):
                self._decide(record, admitted, event.envelope.repo, trace)

    def _served(self, key: bytes | None) -> bool:
        repo = key.decode("utf-8", "replace") if key is not None else ""
        if repo.startswith(TICK_REPO_PREFIX):
            return True
        return any(fnmatch.fnmatchcase(repo, pattern) for pattern in self.engine.repos)

    def _misrouted(self, record: Inbound, event: Event) -> str | None:
        envelope = event.envelope
        allowed = TOPIC_INPUTS.get(record.topic)
        if allowed is not None and envelope.type not in allowed:
            return f"{envelope.type} does not belong on {record.topic}"
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if key != envelope.repo:
            return (
                f"message key {key!r} is not the event's repo {envelope.repo!r}; key every "
                "event by its repository so one repository's events share a partition"
            )
        if envelope.repo.startswith(TICK_REPO_PREFIX) and (
            record.topic != TICKS or envelope.repo != tick_repo(record.partition)
        ):
            return f"{envelope.repo!r} is reserved for the timer's ticks of that partition"
        return None

    def _tick(self, record: Inbound, tick: Event, trace: TraceContext | None) -> None:
        for repo in sorted(self.index(record.partition)):
            state = self.state(repo, record.partition)
            due = self.engine.due(repo, state)
            if due is None or due > tick.envelope.occurred_at:
                continue
            envelope = tick.envelope
            per_repo = Event(
                Envelope(
                    event_id=derive_id(envelope.event_id, repo),
                    type=envelope.type,
                    occurred_at=envelope.occurred_at,
                    repo=repo,
                    change_id=None,
                    task_id=None,
                    trace_id=envelope.trace_id,
                    causation_id=envelope.event_id,
                    actor=envelope.actor,
                ),
                tick.payload,
                tick.scope,
            )
            self._decide(record, per_repo, repo, trace)

    def _decide(
        self,
        record: Inbound,
        event: Event,
        repo: str,
        trace: TraceContext | None,
    ) -> None:
        before = self.state(repo, record.partition)
        try:
            after, decisions = handle(before, event, self.engine.core)
        except Exception as exc:  # a core bug must not stop the coordinator: keep the input
            log.exception("core failed on %s %s", event.envelope.type, event.envelope.event_id)
            self._dead_letter(record, HANDLER_FAILED, f"{type(exc).__name__}: {exc}", None)
            return
        if not decisions:
            return  # a duplicate, or a tick with nothing due: the state is unchanged
        slot = self._slot(repo, record.partition, before)
        slot.state = after
        self._publish(slot, decisions, trace, before, after, event)
        self._reindex(repo, record.partition, after)

    def _publish(
        self,
        slot: Slot,
        decisions: Sequence[Event],
        trace: TraceContext | None,
        before: RepoState,
        after: RepoState,
        cause: Event,
    ) -> None:
        key = slot.repo.encode("utf-8")
        parents: dict[str, bytes] = {}
        for decision in decisions:
            value, headers = self.engine.encode_decision(decision, trace, parents)
            for topic in topics_for(decision, after, before, cause=cause):
                self._emit(slot, Outbound(topic, key, value, headers))
            self.result.decisions += 1
            self.result.emitted.append(decision)
            if isinstance(decision.payload, ev.LeaseGranted):
                self.result.grants += 1
            elif isinstance(decision.payload, ev.EventRejected):
                self.result.rejected += 1

    def _reindex(self, repo: str, partition: int, state: RepoState) -> None:
        active = self.index(partition)
        live = bool(state.changes)
        if live != (repo in active):
            self.result.index[partition] = active | {repo} if live else active - {repo}

    def _refuse(self, record: Inbound, event: Event, refusal: Refusal) -> None:
        """Record the refusal as an EventRejected decision (when asked) and dead-letter it."""
        self._dead_letter(record, refusal.dead_letter_reason, refusal.detail, None)
        envelope = event.envelope
        if not refusal.record or envelope.repo.startswith(TICK_REPO_PREFIX):
            return
        rejected = Event(
            Envelope(
                event_id=derive_id(envelope.event_id, "refused"),
                type="EventRejected",
                occurred_at=envelope.occurred_at,
                repo=envelope.repo,
                change_id=envelope.change_id,
                task_id=envelope.task_id,
                trace_id=envelope.trace_id,
                causation_id=envelope.event_id,
                actor=COORDINATOR_ACTOR,
            ),
            ev.EventRejected(
                rejected_event_id=envelope.event_id,
                rejected_type=envelope.type,
                actor_id=envelope.actor.id,
                reason=refusal.reason,
                detail=refusal.detail[:500],
            ),
        )
        before = self.state(envelope.repo, record.partition)
        after = evolve(before, rejected)
        slot = self._slot(envelope.repo, record.partition, before)
        slot.state = after
        trace = _trace_of(record.headers, envelope.trace_id)
        self._publish(slot, (rejected,), trace, before, after, event)

    def _dead_letter(
        self, record: Inbound, reason: str, detail: str, schema_id: int | None
    ) -> None:
        self.result.outbound.append(self.engine.dead_letter(record, reason, detail, schema_id))
        self.result.dead_letters += 1


def _trace_of(headers: Sequence[Header], trace_id: str) -> TraceContext | None:
    """The input's trace context when its traceparent belongs to the event's trace."""
    for header in headers:
        if header.key == TRACEPARENT_HEADER and header.value is not None:
            try:
                context = parse_traceparent(header.value)
            except TraceContextError:
                return None
            return context if context.trace_id == trace_id else None
    return None
