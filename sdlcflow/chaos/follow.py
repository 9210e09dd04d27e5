"""Following the decisions log while the run goes on: which changes are closed, which leases
are live (the revocation fault needs one), and when the system last made progress.

A background thread reads sdlc.coordinator of the private broker from the start and keeps
every decision with the wall-clock time it arrived; librdkafka reconnects by itself across a
broker bounce.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from sdlcflow.chaos.invariants import CLOSING, LEASE_ENDING
from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.topics import COORDINATOR
from sdlcflow.streams.wire import EventCodec

_POLL_S = 0.2
# decisions that show work getting done (used to time the recovery after a fault)
PROGRESS = (ev.TaskCompleted, *CLOSING)


@dataclass(frozen=True)
class LiveLease:
    repo: str
    change_id: str
    task_id: str
    holder: str
    lease_id: str


def now_ms() -> int:
    return int(time.time() * 1000)


class DecisionFollower:
    """Collects the decisions log live; thread-safe readers for the runner."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"sdlcflow-chaos-follow-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                # outages are expected here: librdkafka's reconnect chatter is not news
                "log_level": 0,
            }
        )
        self._consumer.assign([TopicPartition(COORDINATOR, p, 0) for p in range(partitions)])
        self._codec = EventCodec()
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._arrivals: list[tuple[int, Event]] = []
        self._closed: set[str] = set()
        self._live: dict[str, LiveLease] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-follow", daemon=True)

    def __enter__(self) -> DecisionFollower:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._consumer.poll(_POLL_S)
            except KafkaException:
                continue  # the broker is down for a while: librdkafka reconnects
            if message is None or message.error() is not None:
                continue
            try:
                event = self._codec.decode(message.value())
            except DecodeError:
                continue
            self._note(event)

    def _note(self, event: Event) -> None:
        with self._lock:
            if event.event_id in self._seen:
                return  # a redelivered decision
            self._seen.add(event.event_id)
            self._arrivals.append((now_ms(), event))
            envelope, payload = event.envelope, event.payload
            task_id = envelope.task_id or ""
            if isinstance(payload, CLOSING):
                self._closed.add(envelope.change_id or "")
                prefix = f"{envelope.change_id}/"
                for live in [t for t in self._live if t.startswith(prefix)]:
                    del self._live[live]
            elif isinstance(payload, ev.LeaseGranted):
                self._live[task_id] = LiveLease(
                    envelope.repo, envelope.change_id or "", task_id, payload.holder,
                    payload.lease_id,
                )  # fmt: skip
            elif isinstance(payload, ev.ChangeRevised):
                for rerun in payload.rerun:
                    self._live.pop(rerun, None)
            elif isinstance(payload, LEASE_ENDING):
                self._live.pop(task_id, None)

    def closed(self) -> set[str]:
        with self._lock:
            return set(self._closed)

    def live_leases(self) -> list[LiveLease]:
        with self._lock:
            return sorted(self._live.values(), key=lambda lease: lease.task_id)

    def decisions(self) -> int:
        with self._lock:
            return len(self._arrivals)

    def progress_after(self, at_ms: int) -> int | None:
        """When the first sign of progress arrived after `at_ms` (None: not yet)."""
        with self._lock:
            for arrived, event in self._arrivals:
                if arrived >= at_ms and isinstance(event.payload, PROGRESS):
                    return arrived
        return None
