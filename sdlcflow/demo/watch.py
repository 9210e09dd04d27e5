"""Watching the log: every step of the demo is proven by events read back from Kafka.

`LogWatch` tails the coordinator's decisions (and the agents' inputs, for evidence) of ONE
repository from the moment it starts, in a background thread, so a step can wait for "the
ConflictDetected of change B" with a timeout instead of sleeping. Topics are keyed by repo,
so a unique repository name per run keeps runs apart on a shared broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from sdlcflow.core.events import Event
from sdlcflow.demo.errors import DemoError
from sdlcflow.processors import positions
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR
from sdlcflow.streams.wire import EventCodec

Match = Callable[[Event], bool]
Health = Callable[[], None]

POLL_S = 0.2


class WaitTimedOut(DemoError):
    """The awaited event did not arrive in time."""


@dataclass(frozen=True)
class Seen:
    """One event read back, with where it was read (the evidence a person can look up)."""

    event: Event
    topic: str
    partition: int
    offset: int


def end_offsets(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics` at its current end (what exists now is not this run's)."""
    try:
        return positions.end_offsets(bootstrap, topics)
    except positions.PositionError as exc:
        raise DemoError(str(exc)) from exc


def start_group_at_end(bootstrap: str, group_id: str, topics: Iterable[str]) -> None:
    """Position a new consumer group at the current end, so a service started in it reads only
    what this run produces (instead of replaying other runs' history)."""
    try:
        positions.start_new_group_at_end(bootstrap, group_id, topics)
    except positions.PositionError as exc:
        raise DemoError(str(exc)) from exc


class LogWatch:
    """Collects one repository's events from the coordinator and agent topics, live.

    Args:
        bootstrap: Kafka bootstrap servers.
        repo: only events of this repository are kept.
        topics: what to read (default: decisions and agent inputs).
    """

    def __init__(
        self,
        bootstrap: str,
        repo: str,
        *,
        topics: tuple[str, ...] = (COORDINATOR, AGENT_EVENTS),
    ) -> None:
        self.bootstrap = bootstrap
        self.repo = repo
        self.topics = topics
        self._codec = EventCodec()
        self._seen: list[Seen] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"sdlcflow-demo-watch-{uuid.uuid4()}",
                # we read from explicit positions and never commit: a watch leaves no trace
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.start_positions = end_offsets(bootstrap, topics)
        self._consumer.assign(self.start_positions)

    def __enter__(self) -> LogWatch:
        self._thread = threading.Thread(target=self._loop, name="demo-log-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._consumer.poll(POLL_S)
            except KafkaException as exc:
                self._error = str(exc)
                continue
            if message is None or message.error() is not None:
                continue
            try:
                event = self._codec.decode(message.value())
            except DecodeError:
                continue  # the dead-letter topic has it; not this demo's business
            if event.envelope.repo != self.repo:
                continue
            seen = Seen(
                event, message.topic() or "", message.partition() or 0, message.offset() or 0
            )
            with self._changed:
                self._seen.append(seen)
                self._changed.notify_all()

    # -- reading ------------------------------------------------------------------------------

    def events(self, match: Match | None = None) -> list[Event]:
        """Everything seen so far (in log order), optionally filtered."""
        with self._changed:
            return [s.event for s in self._seen if match is None or match(s.event)]

    def mark(self) -> int:
        """How many events were seen so far: pass it to `after` to ignore older ones."""
        with self._changed:
            return len(self._seen)

    def position_of(self, event_id: str) -> int:
        """The mark just after an event (0 if it was never seen)."""
        with self._changed:
            ids = [s.event.event_id for s in self._seen]
        return ids.index(event_id) + 1 if event_id in ids else 0

    def after(self, mark: int) -> Callable[[Match], Match]:
        """Matchers that only accept events seen after `mark` (e.g. checks of a new head)."""

        def wrap(match: Match) -> Match:
            def later(event: Event) -> bool:
                with self._changed:
                    newer = {s.event.event_id for s in self._seen[mark:]}
                return event.event_id in newer and match(event)

            return later

        return wrap

    def located(self, event_id: str) -> Seen | None:
        with self._changed:
            return next((s for s in self._seen if s.event.event_id == event_id), None)

    def wait_for(
        self,
        expecting: str,
        match: Match,
        *,
        timeout_s: float,
        hint: str,
        health: Health | None = None,
    ) -> Event:
        """The first event that matches, waiting up to `timeout_s`; `health` is called while
        waiting so a dead service fails the wait at once with its own message."""
        deadline = time.monotonic() + timeout_s
        checked = 0
        while True:
            with self._changed:
                found = next((s.event for s in self._seen if match(s.event)), None)
                if found is not None:
                    return found
                checked = len(self._seen)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(timeout=min(remaining, 1.0))
            if health is not None:
                health()
        problem = f" (the watch saw a broker error: {self._error})" if self._error else ""
        raise WaitTimedOut(
            f"{expecting} did not arrive within {timeout_s:.0f} s{problem}; {checked} events of "
            f"{self.repo} were seen on {', '.join(self.topics)}. {hint}"
        )


def of_type(*types: str, change_id: str | None = None, task_step: str | None = None) -> Match:
    """A matcher: event type in `types`, optionally of one change and one step's task."""

    def match(event: Event) -> bool:
        envelope = event.envelope
        if envelope.type not in types:
            return False
        if change_id is not None and envelope.change_id != change_id:
            return False
        return task_step is None or envelope.task_id == f"{envelope.change_id}/{task_step}"

    return match
