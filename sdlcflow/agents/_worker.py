"""The Worker: consume offers, take leases, run handlers, heartbeat, fence, compensate, report.

    async with Worker([lint], concurrency=4) as worker:
        await worker.run()          # until SIGTERM/SIGINT or worker.stop()

Per offer: publish a signed LeaseRequested as soon as the offer arrives; wait for the
coordinator's LeaseGranted/Denied (matched by causation id) and heartbeat every TTL/3 from the
grant on; run the handler; publish exactly one of TaskSucceeded / TaskFailed (bound to the
granted inputs and epoch) or, when the lease was lost, LeaseReleased with the reason after the
compensation hook ran. Offers of one repository are handled in order: their lease requests
leave in offer order (pipelined, not one round trip after another) and their handlers run one
after the other, each starting once the previous one's result is sent (the coordinator's
verdict is awaited aside). An offer is finished once its result is in the log; offsets are
committed only below the lowest unfinished offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlcflow.agents._context import LeaseInfo, TaskContext, Workdir, task_logger
from sdlcflow.agents._decorator import AgentDefinition, definition_of
from sdlcflow.agents._errors import AgentDefinitionError, AgentError
from sdlcflow.agents._execution import (
    DEFAULT_STOP_GRACE_S,
    Failed,
    Lost,
    Succeeded,
    compensate,
    execute,
)
from sdlcflow.agents._identity import AgentIdentity
from sdlcflow.agents._lease import LeaseClock
from sdlcflow.agents._offsets import OffsetTracker
from sdlcflow.agents._transport import (
    AsyncPublisher,
    OfferConsumer,
    Skipped,
    TaskFollower,
    agent_producer_config,
    frame_headers,
    repo_matcher,
    topics_exist,
)
from sdlcflow.core import events as ev
from sdlcflow.core.events import Envelope, Event, Payload, VerifiedState
from sdlcflow.observability.latency import LatencySamples
from sdlcflow.observability.spans import handling
from sdlcflow.settings import Settings
from sdlcflow.streams.consumer import Delivery, Refusal, consumer_config
from sdlcflow.streams.deadletter import dead_letter_event
from sdlcflow.streams.producer import DeliveryError
from sdlcflow.streams.topics import AGENT_EVENTS, DEAD_LETTER, task_topic
from sdlcflow.streams.wire import EventCodec, event_types

log = logging.getLogger("sdlcflow.agents")

# Decisions the worker reacts to (the coordinator routes each to the task's topic); everything
# else on the task topics is skipped in the follower thread.
WATCHED = frozenset(
    {
        "LeaseGranted",
        "LeaseDenied",
        "LeaseExtended",
        "LeaseHeartbeatRejected",
        "LeaseRevoked",
        "LeaseExpired",
        "TaskCancelled",
        "TaskCompleted",
        "ResultRejected",
        "RetryScheduled",
        "TaskDeadLettered",
        "CompensationRequested",
        "EventRejected",
    }
)
VERDICTS = ("TaskCompleted", "ResultRejected", "RetryScheduled", "TaskDeadLettered")
_RECENT_LEASES = 1024
RELEASED_ON_SHUTDOWN = "agent shutting down; lease released for another agent"
_MAX_ERROR_CHARS = 2000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _mono_ms() -> float:
    return time.monotonic() * 1000.0


@dataclass
class TaskHops:
    """Wall-clock milliseconds (this host) at each hop of one task's round trip.

    `cause` is the offer's occurred_at (the event that made the task ready); `*_produced` are
    the Kafka timestamps the coordinator's producer gave its messages; `*_seen` are when the
    worker's event loop got them.
    """

    cause: float
    offer_produced: float
    offer_seen: float
    requested: float = 0.0
    grant_produced: float = 0.0
    grant_seen: float = 0.0
    started: float = 0.0
    result_sent: float = 0.0
    verdict_produced: float = 0.0
    verdict_seen: float = 0.0


@dataclass
class _Run:
    """One granted lease, kept alive (heartbeats) from the grant until it settles."""

    definition: AgentDefinition
    ctx: TaskContext
    clock: LeaseClock
    holder_event: Event  # the grant
    verdict: asyncio.Future[Delivery]
    hops: TaskHops
    requested_local: float
    keeper: asyncio.Task[None] | None = None
    confirmed: asyncio.Future[None] | None = None  # the broker took the result
    compensated: bool = False


@dataclass
class _Offer:
    """An offer queued behind its repository's earlier ones; its lease request already left."""

    delivery: Delivery
    offer: ev.TaskOffered
    hops: TaskHops
    lease: asyncio.Future[_Run | None] | None = None


@dataclass
class WorkerStats:
    """Counters a person or a benchmark reads off a running worker."""

    offers: int = 0
    granted: int = 0
    denied: int = 0
    refused: int = 0  # the request itself was rejected (credential, scope, unknown task)
    unanswered: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    accepted: int = 0
    rejected: int = 0
    heartbeats: int = 0
    # bounded: cumulative buckets for /metrics and the latest samples (observability.latency)
    grant_latency_ms: LatencySamples = field(default_factory=LatencySamples)  # request -> answer
    round_trip_ms: LatencySamples = field(default_factory=LatencySamples)  # request -> accepted
    # the offer's decision time (coordinator's clock) -> result accepted (this host's clock):
    # includes the offer's delivery and its wait behind the same repository's earlier tasks
    offer_to_accepted_ms: LatencySamples = field(default_factory=LatencySamples)
    # per accepted task, when each hop happened (only with Worker(record_hops=True))
    hops: list[TaskHops] = field(default_factory=list)


class Worker:
    """Runs @agent handlers for their capabilities against Kafka and the coordinator.

    Args:
        agents: @agent-decorated functions (one per capability).
        bootstrap: Kafka bootstrap servers (default: SDLCFLOW_KAFKA_BOOTSTRAP).
        identity: who this process is (default: `AgentIdentity.from_env()`).
        concurrency: offers taken at once, each from its arrival until its result is in the
            log (the verdict is awaited without a slot); one repository's still run in order.
        group_id: consumer group for the offers (default: derived from the capabilities, so
            processes running the same agents share the work).
        grant_timeout_s: how long to wait for LeaseGranted/LeaseDenied before giving up on an
            offer (a grant arriving later is released at once).
        verdict_timeout_s: how long to wait for the coordinator to accept or reject a result
            before moving on (the result is in the log either way).
        drain_timeout_s: on shutdown, how long running tasks may finish before their leases
            are released.
        stop_grace_s: how long a sync handler may keep running after its lease was lost before
            compensation runs anyway.
        workdir_root: where per-task working directories are made (default: the temp dir).
        repos: glob patterns of the repositories served (default: all); other repositories'
            messages are skipped undecoded and their offers left to other agents' groups.
        codec: the wire codec (default: current schemas, configured registry).
        producer_config / consumer_config: extra librdkafka settings.
        record_hops: keep a `TaskHops` per accepted task in `stats.hops` (benchmarks; grows
            without bound, so off by default).
    """

    def __init__(
        self,
        agents: Sequence[Callable[..., Any] | AgentDefinition],
        *,
        bootstrap: str | None = None,
        identity: AgentIdentity | None = None,
        concurrency: int = 1,
        group_id: str | None = None,
        grant_timeout_s: float = 10.0,
        verdict_timeout_s: float = 10.0,
        drain_timeout_s: float = 30.0,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        workdir_root: Path | None = None,
        repos: Sequence[str] = (),
        codec: EventCodec | None = None,
        producer_config: Mapping[str, Any] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        record_hops: bool = False,
    ) -> None:
        self.definitions = _definitions(agents)
        _check_positive(
            concurrency=concurrency,
            grant_timeout_s=grant_timeout_s,
            verdict_timeout_s=verdict_timeout_s,
            stop_grace_s=stop_grace_s,
        )
        if drain_timeout_s < 0:
            raise AgentDefinitionError("drain_timeout_s must be >= 0 (0 releases leases at once)")
        self.identity = identity or AgentIdentity.from_env()
        self.identity.check(self.definitions, _now_ms())
        self.bootstrap = bootstrap or Settings.from_env().kafka_bootstrap
        self.concurrency = concurrency
        self.group_id = group_id or "sdlcflow-agents-" + "+".join(sorted(self.definitions))
        self.grant_timeout_s = grant_timeout_s
        self.verdict_timeout_s = verdict_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.stop_grace_s = stop_grace_s
        self.workdir_root = workdir_root or Path(tempfile.gettempdir()) / "sdlcflow-agents"
        self.repos = tuple(repos)
        self.codec = codec or EventCodec()
        self._producer_config = producer_config
        self._consumer_config = consumer_config
        self.stats = WorkerStats()
        self.record_hops = record_hops
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: AsyncPublisher | None = None
        self._offers: OfferConsumer | None = None
        self._follower: TaskFollower | None = None
        self._tracker = OffsetTracker()
        self._queues: dict[bytes, deque[_Offer]] = {}
        self._runners: dict[bytes, asyncio.Task[None]] = {}
        self._requests: dict[str, tuple[asyncio.Future[Delivery], TaskHops]] = {}
        self._abandoned: OrderedDict[str, None] = OrderedDict()
        self._runs: dict[str, _Run] = {}
        self._recent: OrderedDict[str, _Run] = OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()
        self._settling: set[asyncio.Task[None]] = set()  # results awaiting their verdict
        self._stopping = asyncio.Event()
        self._closed = False
        self._releasing = False  # shutting down past the drain time: run nothing more

    # ---------------------------------------------------------------------------------------
    # lifecycle

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Connect, position on the decision log, and start taking offers."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        base = consumer_config(
            self.bootstrap,
            self.group_id,
            from_beginning=True,
            overrides=self._consumer_config,
        )
        topics = [task_topic(c) for c in sorted(self.definitions)]
        missing = await asyncio.to_thread(topics_exist, base, [*topics, AGENT_EVENTS])
        if missing:
            raise AgentError(
                f"topics {missing} do not exist; create them with `sdlcflow up` (new capabilities "
                "need their sdlc.tasks.<capability> topic too)"
            )
        actor = self.identity.actor_id
        self._publisher = AsyncPublisher(
            self._loop,
            self.codec,
            agent_producer_config(self.bootstrap, actor, self._producer_config),
        )
        known = set(event_types())
        wanted_repo = repo_matcher(self.repos)
        self._follower = TaskFollower(
            config=base,
            topics=topics,
            codec=self.codec,
            wanted=WATCHED,
            deliver=self._from_thread(self._on_decisions),
            skip=frame_headers(self.codec, known - WATCHED),
            wanted_repo=wanted_repo,
        )
        await asyncio.to_thread(self._follower.start)
        self._offers = OfferConsumer(
            config=base,
            topics=topics,
            codec=self.codec,
            group_id=self.group_id,
            slots=self.concurrency,
            deliver=self._from_thread(self._on_offers),
            revoked=self._from_thread(self._tracker.forget),
            skip=frame_headers(self.codec, known - {"TaskOffered"}),
            wanted_repo=wanted_repo,
        )
        self._offers.start()
        log.info("agent %s serving %s (concurrency %d)", actor, topics, self.concurrency)

    def _from_thread(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        loop = self._loop
        assert loop is not None

        def hand_over(arg: Any) -> None:
            loop.call_soon_threadsafe(fn, arg)

        return hand_over

    def task_topic_reads(self) -> tuple[int, int]:
        """Messages the follower read on the task topics, and how many of them it decoded."""
        if self._follower is None:
            return (0, 0)
        return (self._follower.read, self._follower.decoded)

    def stop(self) -> None:
        """Ask `run()` to return; in-flight tasks drain (or release their leases)."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve until `stop()`, SIGTERM or SIGINT; then drain."""
        restore = self._install_signals()
        try:
            while not self._stopping.is_set():
                self._raise_thread_errors()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=0.5)
        finally:
            restore()
        await self.shutdown()

    def _install_signals(self) -> Callable[[], None]:
        loop = self._loop
        if loop is None or threading.current_thread() is not threading.main_thread():
            return lambda: None
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)

        def restore() -> None:
            for sig in signals:
                loop.remove_signal_handler(sig)

        return restore

    def _raise_thread_errors(self) -> None:
        for part in (self._offers, self._follower):
            if part is not None and part.error is not None:
                raise AgentError(f"Kafka consumer thread failed: {part.error}") from part.error

    async def shutdown(self) -> None:
        """Stop taking offers, let running tasks finish for `drain_timeout_s`, release the rest."""
        if self._closed:
            return
        self._closed = True
        if self._offers is not None:
            self._offers.stop_accepting()
        runners = [t for t in (*self._runners.values(), *self._settling) if not t.done()]
        if runners:
            _, pending = await asyncio.wait(runners, timeout=self.drain_timeout_s)
            if pending:
                # the loss path stops each handler, compensates and releases its lease; leases
                # granted to offers still queued are released unrun
                self._releasing = True
                for run in list(self._runs.values()):
                    self._lose(run, RELEASED_ON_SHUTDOWN)
                _, pending = await asyncio.wait(pending, timeout=self.stop_grace_s)
                for task in pending:
                    task.cancel()  # offers not yet leased: left uncommitted
                if pending:
                    await asyncio.wait(pending, timeout=10.0)
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)
        self._commit()
        for part in (self._offers, self._follower):
            if part is not None:
                await asyncio.to_thread(part.close)
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.close)

    # ---------------------------------------------------------------------------------------
    # offers: key-ordered queues, bounded by the consumer's slots

    def _on_offers(self, batch: list[Delivery | Refusal | Skipped]) -> None:
        for item in batch:
            if isinstance(item, Refusal):
                self._spawn(self._dead_letter(item))
                continue
            tp = (item.topic, item.partition)
            self._tracker.started(tp, item.offset)
            if isinstance(item, Skipped):  # decisions (the follower reads them), other repositories
                self._finished(item, slot=False)
                continue
            key = item.key or item.event.envelope.repo.encode()
            offer = item.event.payload
            if not isinstance(offer, ev.TaskOffered):
                self._finished(item)  # a decision of an older schema version: the follower's
                continue
            entry = _Offer(item, offer, _hops_of(item))
            # requested now, in arrival order: the repository's offers are pipelined
            entry.lease = asyncio.ensure_future(self._request_lease(entry))
            self._queues.setdefault(key, deque()).append(entry)
            if key not in self._runners or self._runners[key].done():
                self._runners[key] = asyncio.ensure_future(self._drain_key(key))

    async def _drain_key(self, key: bytes) -> None:
        """Run the repository's granted tasks in offer order, one handler at a time."""
        queue = self._queues[key]
        while queue:
            entry = queue.popleft()
            delivery = entry.delivery
            try:
                assert entry.lease is not None
                try:
                    run = await entry.lease
                except asyncio.CancelledError:
                    queue.appendleft(entry)  # not started: released (or dropped) below
                    raise
                if run is None:
                    self._finished(delivery)
                    continue
                name, agent_id = f"agent {entry.offer.contract.capability}", self.identity.actor_id
                with handling(name, delivery.event.envelope, delivery.trace, agent_id=agent_id):
                    settled = await self._run_task(run)
                self._settle_aside(run, settled, delivery)
            except asyncio.CancelledError:
                self._release_queued(queue)
                raise
            except Exception:
                log.exception("offer %s failed in the SDK; it will be re-offered", delivery.offset)
                self._finished(delivery)
        self._queues.pop(key, None)

    def _release_queued(self, queue: deque[_Offer]) -> None:
        """Shutting down: leases granted to offers that never ran go back at once; requests
        still unanswered are dropped (a late grant is released when it comes)."""
        for entry in queue:
            lease = entry.lease
            if lease is None:
                continue
            if not lease.done():
                lease.cancel()
            elif not lease.cancelled() and lease.exception() is None:
                run = lease.result()
                if run is not None and run.clock.lease_id in self._runs:
                    self._lose(run, RELEASED_ON_SHUTDOWN)
                    self._spawn(self._report_unstarted(run))

    def _settle_aside(self, run: _Run, settled: asyncio.Future[bool], delivery: Delivery) -> None:
        """Await the verdict off the repository's queue. The offer is finished (its slot free,
        its offset committable) once the broker has the result: a re-delivered offer would
        only be denied, and waiting for the verdict is no work for a slot."""

        async def settle() -> None:
            finished = False
            try:
                if run.confirmed is not None:
                    with contextlib.suppress(DeliveryError):  # logged with the verdict
                        await asyncio.shield(run.confirmed)
                self._finished(delivery)
                finished = True
                if await settled:
                    self._accepted(run)
            finally:
                if not finished:
                    self._finished(delivery)

        task = asyncio.ensure_future(settle())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _finished(self, delivery: Delivery | Skipped, *, slot: bool = True) -> None:
        self._tracker.finished((delivery.topic, delivery.partition), delivery.offset)
        if self._offers is not None and slot:
            self._offers.release_slot()
        self._commit()

    def _commit(self) -> None:
        if self._offers is not None:
            self._offers.commit(self._tracker.committable())

    async def _dead_letter(self, refusal: Refusal) -> None:
        letter = refusal.letter
        event = dead_letter_event(letter, actor=self.identity.actor, occurred_at=_now_ms())
        try:
            await self._publish(DEAD_LETTER, event)
        finally:
            if self._offers is not None:  # not tracked: its offset is committed with the next
                self._offers.release_slot()

    # ---------------------------------------------------------------------------------------
    # one offer: request, wait, run, report

    async def _request_lease(self, item: _Offer) -> _Run | None:
        """Ask for the lease on an offer; the granted run, kept alive from now on, or None."""
        offer, delivery = item.offer, item.delivery
        definition = self.definitions.get(offer.contract.capability)
        if definition is None:
            return None  # another capability's offer on a shared topic
        name, agent_id = f"agent {offer.contract.capability}", self.identity.actor_id
        # a span of its own (the request is its child), like the handler's span later
        with handling(name, delivery.event.envelope, delivery.trace, agent_id=agent_id):
            return await self._lease(definition, item)

    async def _lease(self, definition: AgentDefinition, item: _Offer) -> _Run | None:
        offer, envelope = item.offer, item.delivery.event.envelope
        self.stats.offers += 1
        request = self._envelope(
            "LeaseRequested",
            envelope.repo,
            envelope.change_id,
            offer.contract.id,
            envelope.trace_id,
            envelope.event_id,
        )
        answer: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._requests[request.event_id] = (answer, item.hops)
        requested_local = _mono_ms()
        item.hops.requested = _now_ms()
        try:
            await self._send(request, ev.LeaseRequested(offer.contract.capability))
            decision = await asyncio.wait_for(answer, self.grant_timeout_s)
        except TimeoutError:
            self.stats.unanswered += 1
            self._remember(self._abandoned, request.event_id, None)
            log.warning(
                "no answer to lease request for %s within %.1f s",
                offer.contract.id,
                self.grant_timeout_s,
            )
            return None
        except asyncio.CancelledError:
            self._remember(self._abandoned, request.event_id, None)
            raise
        finally:
            self._requests.pop(request.event_id, None)
        self.stats.grant_latency_ms.append(_mono_ms() - requested_local)
        payload = decision.event.payload
        if isinstance(payload, ev.EventRejected):
            self.stats.refused += 1
            log.warning(
                "lease request for %s refused: %s %s",
                offer.contract.id,
                payload.reason.value,
                payload.detail,
            )
            return None
        if isinstance(payload, ev.LeaseDenied):
            self.stats.denied += 1
            log.info(
                "lease on %s denied: %s %s", offer.contract.id, payload.reason.value, payload.detail
            )
            return None
        self.stats.granted += 1
        return self._granted(definition, offer, decision.event, requested_local, item.hops)

    def _granted(
        self,
        definition: AgentDefinition,
        offer: ev.TaskOffered,
        grant_event: Event,
        requested_local: float,
        hops: TaskHops,
    ) -> _Run:
        """Keep the granted lease alive (heartbeats) until it settles, even while queued."""
        contract = offer.contract
        grant: ev.LeaseGranted = grant_event.payload  # type: ignore[assignment]
        envelope = grant_event.envelope
        clock = LeaseClock.granted(
            grant.lease_id, grant.epoch, grant.expires_at, envelope.occurred_at, requested_local
        )
        lease = LeaseInfo(
            grant.lease_id, grant.epoch, grant.expires_at, grant.attempt, grant.inputs
        )
        change_id = envelope.change_id or ""
        ctx = TaskContext(
            contract=contract,
            repo=envelope.repo,
            change_id=change_id,
            trace_id=envelope.trace_id,
            lease=lease,
            scratch=Workdir(self.workdir_root, f"{definition.capability}-"),
            logger=task_logger(
                logging.getLogger(f"sdlcflow.agents.{definition.capability}"),
                trace_id=envelope.trace_id,
                task_id=contract.id,
                change_id=change_id,
                lease_id=grant.lease_id,
            ),
            change=offer.change,
            policy_modes=offer.policy_modes,
        )
        verdict: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        run = _Run(definition, ctx, clock, grant_event, verdict, hops, requested_local)
        ctx.heartbeater = lambda details: ctx.logger.debug("progress %s", details)
        self._runs[grant.lease_id] = run
        run.keeper = asyncio.ensure_future(self._keep(run))
        return run

    async def _run_task(self, run: _Run) -> asyncio.Future[bool]:
        """Run the handler and send its result; the returned future says (later) whether the
        coordinator accepted it."""
        run.hops.started = _now_ms()
        if self._releasing:
            self._lose(run, RELEASED_ON_SHUTDOWN)
        if run.ctx.lost.is_set():  # lost while queued behind the repository's earlier tasks
            await self._report_unstarted(run)
            return self._done(run, accepted=False)
        try:
            outcome = await execute(run.definition, run.ctx, stop_grace_s=self.stop_grace_s)
            confirmed = await self._report(run, outcome)
        except BaseException:
            self._done(run, accepted=False)
            raise
        if confirmed is None:
            return self._done(run, accepted=False)
        return asyncio.ensure_future(self._verdict_of(run, confirmed))

    async def _verdict_of(self, run: _Run, confirmed: asyncio.Future[None]) -> bool:
        try:
            return await self._await_verdict(run, confirmed)
        finally:
            self._done(run, accepted=False)

    def _done(self, run: _Run, *, accepted: bool) -> asyncio.Future[bool]:
        """Stop keeping the lease and forget the run (it stays answerable to compensation)."""
        if run.keeper is not None:
            run.keeper.cancel()
        lease_id = run.clock.lease_id
        if self._runs.pop(lease_id, None) is not None:
            self._remember(self._recent, lease_id, run)
            if run.ctx.scratch.made:
                self._spawn(asyncio.to_thread(run.ctx.scratch.remove))
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        done.set_result(accepted)
        return done

    def _accepted(self, run: _Run) -> None:
        self.stats.round_trip_ms.append(_mono_ms() - run.requested_local)
        self.stats.offer_to_accepted_ms.append(float(_now_ms() - run.hops.cause))
        if self.record_hops:
            self.stats.hops.append(run.hops)

    async def _report_unstarted(self, run: _Run) -> None:
        """A lease lost (or given back) before its handler started: nothing to compensate."""
        run.compensated = True
        self.stats.lost += 1
        grant = run.holder_event.payload
        assert isinstance(grant, ev.LeaseGranted)
        reason = run.clock.reason or "lease lost"
        run.ctx.logger.warning("lease lost before the handler started (%s)", reason)
        self._done(run, accepted=False)
        await self._send_for(
            run,
            ev.LeaseReleased(grant.lease_id, grant.epoch, f"lease lost before running: {reason}"),
        )

    async def _report(
        self, run: _Run, outcome: Succeeded | Failed | Lost
    ) -> asyncio.Future[None] | None:
        """Publish the outcome; the broker's confirmation of the result, or None when the
        lease was lost (its LeaseReleased is confirmed before this returns)."""
        ctx, grant = run.ctx, run.holder_event.payload
        assert isinstance(grant, ev.LeaseGranted)
        payload: Payload
        if isinstance(outcome, Lost) or not run.clock.result_sent():
            if not isinstance(outcome, Lost):  # lost after the handler returned: fence it
                outcome = await compensate(run.definition, ctx, run.clock.reason or "lease lost")
            run.compensated = True
            self.stats.lost += 1
            status = (
                "ran" if outcome.compensated else (outcome.compensation_error or "none defined")
            )
            payload = ev.LeaseReleased(
                grant.lease_id, grant.epoch, f"lease lost: {outcome.reason}; compensation: {status}"
            )
            ctx.logger.warning("lease lost (%s); compensation: %s", outcome.reason, status)
            await self._send_for(run, payload)
            return None
        if isinstance(outcome, Succeeded):
            self.stats.succeeded += 1
            result = outcome.result
            payload = ev.TaskSucceeded(
                lease_id=grant.lease_id,
                epoch=grant.epoch,
                inputs=grant.inputs,
                touched=result.touched,
                artifacts=result.artifacts,
                verified=result.verified or _verified_from(grant.inputs),
                policy=result.policy,
            )
        else:
            self.stats.failed += 1
            payload = ev.TaskFailed(
                grant.lease_id, grant.epoch, outcome.error[:_MAX_ERROR_CHARS], outcome.retryable
            )
        # queued without waiting: the next task of the repository may start at once (the
        # producer keeps their order); the confirmation is awaited with the verdict
        confirmed = self._publisher_of().send(
            AGENT_EVENTS, self._signed(self._envelope_for(run, type(payload).__name__), payload)
        )
        run.hops.result_sent = _now_ms()
        run.confirmed = confirmed
        return confirmed

    async def _await_verdict(self, run: _Run, confirmed: asyncio.Future[None]) -> bool:
        try:
            await confirmed
        except DeliveryError as exc:
            run.ctx.logger.warning("result not delivered; the task will be re-offered: %s", exc)
            return False
        try:
            verdict = await asyncio.wait_for(asyncio.shield(run.verdict), self.verdict_timeout_s)
        except TimeoutError:
            run.ctx.logger.warning("no verdict on the result within %.1f s", self.verdict_timeout_s)
            return False
        run.clock.settle()
        payload = verdict.event.payload
        if isinstance(payload, ev.TaskCompleted):
            self.stats.accepted += 1
            return True
        if isinstance(payload, ev.ResultRejected):
            self.stats.rejected += 1
            run.ctx.logger.warning("result rejected: %s %s", payload.reason.value, payload.detail)
        return False

    # ---------------------------------------------------------------------------------------
    # keeping the lease: heartbeats every TTL/3, silence past the TTL means loss

    async def _keep(self, run: _Run) -> None:
        clock = run.clock
        while clock.active:
            now = _mono_ms()
            if clock.silent(now):
                self._lose(run, "no word from the coordinator within the lease TTL")
                return
            if clock.heartbeat_due(now):
                beat = self._envelope_for(run, "LeaseHeartbeat")
                clock.heartbeat_sent(beat.event_id, now)
                self.stats.heartbeats += 1
                self._spawn(self._send(beat, ev.LeaseHeartbeat(clock.lease_id, clock.epoch)))
            await asyncio.sleep(max(0.0, (clock.next_wakeup() - _mono_ms()) / 1000.0) + 0.001)

    def _lose(self, run: _Run, reason: str) -> None:
        if run.clock.lose(reason):
            run.ctx.lost.set(reason)

    # ---------------------------------------------------------------------------------------
    # decisions from the coordinator

    def _on_decisions(self, decisions: list[Delivery]) -> None:
        me, seen = self.identity.actor_id, _now_ms()
        for decision in decisions:
            event = decision.event
            payload = event.payload
            cause = event.envelope.causation_id
            if isinstance(payload, ev.LeaseGranted | ev.LeaseDenied):
                if payload.holder == me and cause is not None:
                    self._answer(cause, decision, seen)
            elif isinstance(payload, ev.EventRejected):
                if payload.actor_id == me and cause is not None:
                    self._answer(cause, decision, seen)  # the request itself was refused
            elif isinstance(payload, ev.TaskCancelled):
                for run in list(self._runs.values()):
                    if run.ctx.task_id == event.envelope.task_id:
                        self._lose(run, f"task cancelled: {payload.reason}")
            else:
                self._on_lease_decision(decision, me, seen)

    def _answer(self, cause: str, decision: Delivery, seen: float) -> None:
        waiting = self._requests.get(cause)
        event = decision.event
        if waiting is not None and not waiting[0].done():
            waiter, hops = waiting
            hops.grant_produced, hops.grant_seen = float(decision.timestamp or 0), seen
            waiter.set_result(decision)
        elif cause in self._abandoned and isinstance(event.payload, ev.LeaseGranted):
            grant = event.payload  # arrived after we gave up: hand it straight back
            self._spawn(self._release_late(event, grant))

    def _on_lease_decision(self, decision: Delivery, me: str, seen: float) -> None:
        event = decision.event
        payload = event.payload
        lease_id = getattr(payload, "lease_id", None)
        if not isinstance(lease_id, str):
            return
        run = self._runs.get(lease_id)
        if isinstance(payload, ev.CompensationRequested):
            if payload.holder == me:
                self._compensation_requested(lease_id, payload)
            return
        if run is None:
            return
        if isinstance(payload, ev.LeaseExtended):
            run.clock.extended(
                payload.expires_at,
                event.envelope.occurred_at,
                event.envelope.causation_id,
                _mono_ms(),
            )
        elif isinstance(payload, ev.LeaseHeartbeatRejected) and payload.holder == me:
            self._lose(run, f"heartbeat rejected: {payload.reason.value}")
        elif isinstance(payload, ev.LeaseRevoked):
            self._lose(run, f"lease revoked: {payload.reason.value}")
        elif isinstance(payload, ev.LeaseExpired):
            self._lose(run, "lease expired")
        elif event.envelope.type in VERDICTS and not run.verdict.done():
            run.hops.verdict_produced = float(decision.timestamp or 0)
            run.hops.verdict_seen = seen
            run.verdict.set_result(decision)

    def _compensation_requested(self, lease_id: str, request: ev.CompensationRequested) -> None:
        """Undo a lease's writes: a running handler is stopped (the loss path compensates);
        a sent or finished result that was not accepted is compensated here, once."""
        run = self._runs.get(lease_id) or self._recent.get(lease_id)
        if run is None or run.compensated:
            return
        reason = f"compensation requested: {request.reason}"
        if run.clock.active:
            self._lose(run, reason)
            return
        if run.ctx.lost.is_set() and lease_id in self._runs:
            return  # the loss path is already stopping the handler and will compensate
        run.compensated = True
        self._spawn(compensate(run.definition, run.ctx, reason))

    async def _release_late(self, event: Event, grant: ev.LeaseGranted) -> None:
        envelope = self._envelope(
            "LeaseReleased",
            event.envelope.repo,
            event.envelope.change_id,
            event.envelope.task_id,
            event.envelope.trace_id,
            event.envelope.event_id,
        )
        await self._send(
            envelope,
            ev.LeaseReleased(
                grant.lease_id, grant.epoch, "grant arrived after the agent gave up waiting"
            ),
        )

    # ---------------------------------------------------------------------------------------
    # publishing

    def _envelope(
        self,
        type_: str,
        repo: str,
        change_id: str | None,
        task_id: str | None,
        trace_id: str,
        cause: str | None,
    ) -> Envelope:
        return Envelope(
            event_id=str(uuid.uuid4()),
            type=type_,
            occurred_at=_now_ms(),
            repo=repo,
            change_id=change_id,
            task_id=task_id,
            trace_id=trace_id,
            causation_id=cause,
            actor=self.identity.actor,
        )

    def _envelope_for(self, run: _Run, type_: str) -> Envelope:
        grant = run.holder_event.envelope
        return self._envelope(
            type_, grant.repo, grant.change_id, grant.task_id, grant.trace_id, grant.event_id
        )

    async def _send_for(self, run: _Run, payload: Payload) -> None:
        await self._send(self._envelope_for(run, type(payload).__name__), payload)

    async def _send(self, envelope: Envelope, payload: Payload) -> None:
        await self._publish(AGENT_EVENTS, self._signed(envelope, payload))

    def _signed(self, envelope: Envelope, payload: Payload) -> Event:
        return Event(self.identity.sign(envelope, payload), payload)

    async def _publish(self, topic: str, event: Event) -> None:
        await self._publisher_of().publish(topic, event)

    def _publisher_of(self) -> AsyncPublisher:
        assert self._publisher is not None, "Worker not started: use `async with Worker(...)`"
        return self._publisher

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background publish failed: %s", task.exception())

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        while len(cache) > _RECENT_LEASES:
            cache.popitem(last=False)


def _hops_of(delivery: Delivery) -> TaskHops:
    produced = float(delivery.timestamp or 0)
    return TaskHops(float(delivery.event.envelope.occurred_at), produced, float(_now_ms()))


def _verified_from(inputs: tuple[ev.ArtifactRef, ...]) -> VerifiedState:
    """A success verifies exactly the inputs the lease was granted with."""
    named = {ref.name: ref.sha for ref in inputs}
    return VerifiedState(
        head_sha=named.get("head", ""),
        base_sha=named.get("base", ""),
        lockfile_digest=named.get("lockfile", ""),
    )


def _definitions(
    agents: Iterable[Callable[..., Any] | AgentDefinition],
) -> dict[str, AgentDefinition]:
    if isinstance(agents, AgentDefinition) or callable(agents):
        raise AgentDefinitionError(
            "Worker takes a list of agents: Worker([my_agent]), not Worker(my_agent)"
        )
    found: dict[str, AgentDefinition] = {}
    for item in agents:
        definition = definition_of(item)
        if definition.capability in found:
            raise AgentDefinitionError(
                f"two agents for capability {definition.capability!r} "
                f"({found[definition.capability].name} and {definition.name}); "
                "run one per capability per Worker"
            )
        found[definition.capability] = definition
    if not found:
        raise AgentDefinitionError("Worker needs at least one @agent function")
    return found


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise AgentDefinitionError(f"{name} must be > 0, got {value}")
