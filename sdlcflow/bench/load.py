"""The load generator: change requests of the bench mix across many repositories, at a fixed
rate or as fast as possible, with a warm-up excluded from the figures.

It drives any `System` (sdlcflow on Kafka, the PostgreSQL baseline): the system submits a
change and fills a `RunRecord` with what happened; the generator paces, waits and computes.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer

from sdlcflow.bench.mix import MixSpec, planned_steps, template_for
from sdlcflow.bench.processes import ProcessSet, own_usage
from sdlcflow.bench.record import TERMINAL_TYPES, RunRecord, figures
from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.demo.watch import end_offsets
from sdlcflow.errors import SdlcflowError
from sdlcflow.processors.testing import SignedActor, change_request
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS, COORDINATOR
from sdlcflow.streams.wire import EventCodec

PACE_SLICE_S = 0.005


class LoadError(SdlcflowError):
    """The system under load did not do what the run needs (start, finish changes)."""


@dataclass(frozen=True)
class LoadSpec:
    """How much load, how fast. `rate` None: as fast as possible (`blast_changes` at once)."""

    rate: float | None
    warmup_s: float
    measure_s: float
    repos: int = 200
    blast_changes: int = 200
    mix: MixSpec = field(default_factory=MixSpec)
    drain_timeout_s: float = 180.0

    def offered_tasks_per_s(self) -> float | None:
        """The task rate the change rate stands for (mean planned steps of the mix)."""
        if self.rate is None:
            return None
        sample = [planned_steps(self.mix, f"offered-{i}") for i in range(2000)]
        return self.rate * sum(sample) / len(sample)


class System(Protocol):
    """What the generator needs of a coordinator under load."""

    name: str
    record: RunRecord

    def submit(self, change_id: str, repo: str, template: str, measured: bool) -> None: ...

    def flush(self) -> None: ...

    def wait_finished(self, changes: set[str], timeout_s: float) -> set[str]:
        """Wait until every change has an outcome; return those still open at the timeout."""
        ...

    def check(self) -> None: ...


def arrivals(rate: float, seconds: float) -> list[float]:
    """Offsets (s) of evenly spaced submissions at `rate`/s for `seconds`."""
    if rate <= 0 or seconds <= 0:
        return []
    return [i / rate for i in range(math.floor(rate * seconds))]


def head_sha(change_id: str) -> str:
    """A distinct head per change: no two changes verify the same state by accident."""
    return hashlib.sha1(change_id.encode()).hexdigest()


class LoadGenerator:
    """Paces submissions into a system and computes the figures of the measured part."""

    def __init__(self, system: System, spec: LoadSpec, prefix: str, procs: ProcessSet) -> None:
        self.system = system
        self.spec = spec
        self.prefix = prefix
        self.procs = procs
        self._count = 0

    def _next(self) -> tuple[str, str, str]:
        change_id = str(uuid.uuid4())
        repo = f"{self.prefix}r{self._count % self.spec.repos}"
        self._count += 1
        return change_id, repo, template_for(self.spec.mix, change_id)

    def _paced(self, seconds: float, measured: bool) -> set[str]:
        assert self.spec.rate is not None
        submitted: set[str] = set()
        started = time.perf_counter()
        for offset in arrivals(self.spec.rate, seconds):
            while (lag := started + offset - time.perf_counter()) > 0:
                time.sleep(min(lag, PACE_SLICE_S))
            change_id, repo, template = self._next()
            self.system.submit(change_id, repo, template, measured)
            submitted.add(change_id)
        self.system.flush()
        return submitted

    def _blast(self, count: int, measured: bool) -> set[str]:
        submitted: set[str] = set()
        for _ in range(count):
            change_id, repo, template = self._next()
            self.system.submit(change_id, repo, template, measured)
            submitted.add(change_id)
        self.system.flush()
        return submitted

    def probe(self, timeout_s: float = 240.0) -> None:
        """One change end to end before anything is timed: the system is up and serving."""
        first = self._blast(1, measured=False)
        if self.system.wait_finished(first, timeout_s):
            raise LoadError(f"{self.system.name}: the first change did not finish in {timeout_s} s")

    def run(self, *, probe: bool = True) -> dict[str, Any]:
        """Warm up, then measure; `probe` first proves the system serves (once per system)."""
        spec = self.spec
        if probe:
            self.probe()
        if spec.rate is None:
            warm = self._blast(max(1, spec.blast_changes // 5), measured=False)
            self.system.wait_finished(warm, spec.drain_timeout_s)
        else:
            self._paced(spec.warmup_s, measured=False)
        self.procs.measure()
        cpu0, _ = own_usage()
        wall0 = time.perf_counter()
        if spec.rate is None:
            measured = self._blast(spec.blast_changes, measured=True)
        else:
            measured = self._paced(spec.measure_s, measured=True)
        open_changes = self.system.wait_finished(measured, spec.drain_timeout_s)
        wall = time.perf_counter() - wall0
        usage = self.procs.freeze()
        cpu1, rss = own_usage()
        self.system.check()
        result = figures(self.system.record)
        result["offered_changes_per_s"] = spec.rate
        offered_tasks = spec.offered_tasks_per_s()
        result["offered_tasks_per_s"] = None if offered_tasks is None else round(offered_tasks, 1)
        result["unfinished_at_timeout"] = len(open_changes)
        result["processes"] = {name: u.to_json(wall) for name, u in usage.items()}
        result["processes"]["load-generator"] = {
            "cpu_s": round(cpu1 - cpu0, 2),
            "cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1),
            "rss_mb": round(rss, 1),
        }
        return result


# ------------------------------------------------------------------------------------------
# sdlcflow: the decisions log is the record


class DecisionObserver:
    """Reads `sdlc.coordinator` for repositories `<prefix>*` and fills a RunRecord.

    Times are the records' Kafka timestamps (set by the coordinator's producer on this
    machine), so enqueue->lease is the time between the TaskReady and the LeaseGranted
    records, whatever the observer's own delay.
    """

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        record: RunRecord,
        on_approval: Callable[[Event], None],
    ) -> None:
        self.prefix = prefix.encode()
        self.record = record
        self.on_approval = on_approval
        self.codec = EventCodec()
        self.changed = threading.Condition()
        self._ready: dict[str, int] = {}
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-observer-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        self._consumer.assign(end_offsets(bootstrap, (COORDINATOR,)))
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-observer")
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._consumer.consume(1000, 0.1)
                mine = [
                    m
                    for m in batch
                    if m.error() is None and (m.key() or b"").startswith(self.prefix)
                ]
                if not mine:
                    continue
                with self.changed:
                    for message in mine:
                        try:
                            event = self.codec.decode(message.value())
                        except DecodeError:
                            continue
                        self._note(event, message.timestamp()[1])
                    self.changed.notify_all()
        except BaseException as exc:  # surfaced by check() in the main thread
            self.error = exc

    def _note(self, event: Event, at: int) -> None:
        kind, change = event.envelope.type, event.envelope.change_id or ""
        task = event.envelope.task_id or ""
        record = self.record
        if kind == "TaskReady":
            self._ready[task] = at
        elif kind == "LeaseGranted":
            record.grants.append((change, at))
            if task in self._ready:
                record.lease_waits.append((change, at - self._ready.pop(task)))
        elif kind == "LeaseDenied":
            record.denials.append(change)
        elif kind == "TaskCompleted":
            record.completions.append((change, at))
        elif kind == "RetryScheduled":
            record.retries.append(change)
        elif kind == "TaskDeadLettered":
            record.dead_letters.append(change)
        elif kind == "ApprovalAccepted":
            record.approvals.append(change)
        elif kind == "ApprovalRequested":
            self.on_approval(event)
        elif kind in TERMINAL_TYPES and change not in record.terminal:
            record.terminal[change] = (kind, at)

    def wait_finished(
        self, changes: set[str], timeout_s: float, check: Callable[[], None]
    ) -> set[str]:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                open_changes = self.record.unfinished(changes)
                if not open_changes or time.monotonic() > deadline:
                    return open_changes
                self.changed.wait(1.0)
                if self.error is not None:
                    raise LoadError(f"the decisions observer failed: {self.error}")
                check()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


class AutoApprover:
    """Signs every ApprovalRequested of the run as a human reviewer would (Ed25519)."""

    def __init__(self, bootstrap: str, reviewer: SignedActor) -> None:
        self.reviewer = reviewer
        self.publisher = EventPublisher(bootstrap)

    def __call__(self, requested: Event) -> None:
        payload = requested.payload
        if not isinstance(payload, ev.ApprovalRequested):
            return
        signed = self.reviewer.event(
            ev.ApprovalSigned(payload.state, payload.evidence_digest, "bench auto-approval"),
            repo=requested.envelope.repo,
            at=int(time.time() * 1000),
            change_id=requested.envelope.change_id,
            task_id=requested.envelope.task_id,
        )
        self.publisher.publish(AGENT_EVENTS, signed)
        self.publisher._producer.poll(0)

    def close(self) -> None:
        self.publisher.flush()


class KafkaSubmitter:
    """Publishes ChangeRequested records of the mix on `sdlc.change-requests`."""

    def __init__(self, bootstrap: str, record: RunRecord) -> None:
        self.publisher = EventPublisher(bootstrap)
        self.record = record
        self.lock = threading.Lock()

    def submit(self, change_id: str, repo: str, template: str, measured: bool) -> None:
        now = int(time.time() * 1000)
        request = change_request(
            repo, at=now, template=template, change_id=change_id, head_sha=head_sha(change_id)
        )
        with self.lock:
            self.record.submit(change_id, now, template, measured=measured)
        self.publisher.publish(CHANGE_REQUESTS, request)

    def flush(self) -> None:
        self.publisher.flush()

    def close(self) -> None:
        self.publisher.flush()
