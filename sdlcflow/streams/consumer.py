"""The consumer helper: decode, validate, hand to a handler, dead-letter the rest, then commit.

Guarantees (invariant 7): every message either reaches the handler successfully or lands on
`sdlc.dead-letter` with its raw key, value, headers, origin and a precise reason; offsets are
committed only after that happened, so a crash re-delivers rather than loses. The loop polls
with a short timeout and stops cleanly on SIGINT/SIGTERM (while running or open in a `with`
block) or on `stop()`.

    def handle(delivery: Delivery) -> None:
        store(delivery.event)

    with EventConsumer([AGENT_EVENTS], group_id="audit-sink", actor=me) as consumer:
        consumer.run(handle)
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sdlcflow.core.events import Actor, Event
from sdlcflow.errors import SdlcflowError
from sdlcflow.settings import Settings
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.deadletter import (
    HANDLER_INVALID,
    Header,
    MessageDeadLettered,
    dead_letter_event,
    fit_for_dead_letter,
)
from sdlcflow.streams.producer import DeliveryError, EventPublisher
from sdlcflow.streams.topics import DEAD_LETTER
from sdlcflow.streams.wire import EventCodec
from sdlcflow.tracing import TRACEPARENT_HEADER, TraceContext, TraceContextError, parse_traceparent

log = logging.getLogger(__name__)
HANDLER_FAILED = "handler-failed"


class InvalidEvent(SdlcflowError):
    """Raised by a handler for an event that decodes but must not be processed: dead-letter it."""


@dataclass(frozen=True)
class Delivery:
    """One decoded message as a handler sees it, with its origin and trace context."""

    event: Event
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[Header, ...]
    timestamp: int | None
    trace: TraceContext | None


@dataclass(frozen=True)
class Refusal:
    """A message that could not be decoded, and why; becomes a dead letter."""

    letter: MessageDeadLettered


Handler = Callable[[Delivery], None]


def message_headers(message: Message) -> tuple[Header, ...]:
    """The raw headers of a message."""
    raw: list[tuple[str, str | bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    return tuple(
        Header(key, value.encode() if isinstance(value, str) else value) for key, value in raw
    )


def message_timestamp(message: Message) -> int | None:
    kind, value = message.timestamp()
    return None if kind == 0 else int(value)  # 0 = TIMESTAMP_NOT_AVAILABLE


def trace_of(headers: Sequence[Header]) -> TraceContext | None:
    """The W3C trace context carried in the `traceparent` header, if valid."""
    for header in headers:
        if header.key == TRACEPARENT_HEADER and header.value is not None:
            try:
                return parse_traceparent(header.value)
            except TraceContextError:
                return None
    return None


def refusal(
    message: Message, group: str, reason: str, detail: str, schema_id: int | None
) -> Refusal:
    """The dead letter for `message`, keeping its bytes exactly."""
    return Refusal(
        MessageDeadLettered(
            reason=reason,
            detail=detail,
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            consumer_group=group,
            timestamp=message_timestamp(message),
            key=message.key(),
            value=message.value(),
            headers=message_headers(message),
            schema_id=schema_id,
        )
    )


def decode_message(codec: EventCodec, message: Message, group: str) -> Delivery | Refusal:
    """Decode and validate one Kafka message; never raises for bad content."""
    headers = message_headers(message)
    try:
        event = codec.decode(message.value())
    except DecodeError as exc:
        return refusal(message, group, exc.reason.value, exc.detail, exc.schema_id)
    return Delivery(
        event=event,
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        headers=headers,
        timestamp=message_timestamp(message),
        trace=trace_of(headers),
    )


def consumer_config(
    bootstrap: str, group_id: str, *, from_beginning: bool, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Consumer settings; every non-default one says why."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": f"sdlcflow-{group_id}",
        # we commit ourselves, only after the handler and any dead-lettering succeeded
        "enable.auto.commit": False,
        # a new group starts where the caller asks; services want everything not yet seen
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        # read only committed transactional data; our producers are idempotent, not transactional,
        # but processors may write transactionally later
        "isolation.level": "read_committed",
        # cooperative rebalancing keeps other partitions flowing while one moves
        "partition.assignment.strategy": "cooperative-sticky",
    }
    config.update(overrides or {})
    return config


class EventConsumer:
    """A reusable, signal-aware poll loop over sdlcflow topics with dead-lettering.

    Args:
        topics: topics to subscribe to.
        group_id: consumer group; offsets are committed under it.
        actor: identity recorded on the dead letters this consumer writes.
        bootstrap: Kafka bootstrap servers (default: SDLCFLOW_KAFKA_BOOTSTRAP).
        codec: the wire codec (default: current schemas, configured registry).
        publisher: where dead letters go (default: a new EventPublisher).
        from_beginning: a group without committed offsets starts at the earliest offset.
        handler_attempts: tries of a handler that raises before its message is dead-lettered.
        batch_size: messages fetched per poll; offsets are committed once per batch.
        config: extra or overriding librdkafka consumer settings.
    """

    def __init__(
        self,
        topics: Sequence[str],
        *,
        group_id: str,
        actor: Actor,
        bootstrap: str | None = None,
        codec: EventCodec | None = None,
        publisher: EventPublisher | None = None,
        from_beginning: bool = True,
        handler_attempts: int = 3,
        batch_size: int = 100,
        dead_letter_topic: str = DEAD_LETTER,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not topics:
            raise SdlcflowError("EventConsumer needs at least one topic to subscribe to")
        if handler_attempts < 1 or batch_size < 1:
            raise SdlcflowError("handler_attempts and batch_size must be at least 1")
        bootstrap = bootstrap or Settings.from_env().kafka_bootstrap
        self.group_id = group_id
        self.actor = actor
        self.codec = codec or EventCodec()
        self.publisher = publisher or EventPublisher(bootstrap, codec=self.codec)
        self.handler_attempts = handler_attempts
        self.batch_size = batch_size
        self.dead_letter_topic = dead_letter_topic
        self.dead_lettered = 0
        self.handled = 0
        self._stop = threading.Event()
        self._signals: AbstractContextManager[None] = nullcontext()
        self._consumer = Consumer(
            consumer_config(bootstrap, group_id, from_beginning=from_beginning, overrides=config)
        )
        self._consumer.subscribe(list(topics))

    def stop(self) -> None:
        """Ask the loop to finish the current message and return."""
        self._stop.set()

    def run(
        self,
        handler: Handler,
        *,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
        poll_timeout: float = 0.5,
    ) -> int:
        """Process messages until stopped, `max_messages` consumed or `idle_timeout` s of quiet.

        Returns how many messages were consumed (handled or dead-lettered, all committed).
        """
        consumed = 0
        last_activity = time.monotonic()
        with _stop_on_signals(self._stop):
            while not self._stop.is_set():
                if max_messages is not None and consumed >= max_messages:
                    break
                want = self.batch_size if max_messages is None else max_messages - consumed
                messages = self._consumer.consume(min(want, self.batch_size), poll_timeout)
                done = self._process(messages, handler)
                consumed += done
                if done:
                    last_activity = time.monotonic()
                elif idle_timeout is not None and time.monotonic() - last_activity > idle_timeout:
                    break
        return consumed

    def _process(self, messages: list[Message], handler: Handler) -> int:
        processed: list[Message] = []
        for index, message in enumerate(messages):
            if self._stop.is_set():
                self._rewind(messages[index:])
                break
            error = message.error()
            if error is not None:
                self._on_error(error)
                continue
            try:
                self._one(message, handler)
            except DeliveryError as exc:
                log.warning("dead letter not confirmed, will retry the message: %s", exc)
                self._rewind(messages[index:])
                self._stop.wait(1.0)  # back off while the broker recovers
                break
            processed.append(message)
        self._commit(processed)
        return len(processed)

    def _one(self, message: Message, handler: Handler) -> None:
        outcome = decode_message(self.codec, message, self.group_id)
        if isinstance(outcome, Refusal):
            self._dead_letter(outcome.letter)
            return
        reason = self._handle(outcome, handler)
        if reason is not None:
            code, detail = reason
            letter = refusal(message, self.group_id, code, detail, None).letter
            self._dead_letter(letter)
        else:
            self.handled += 1

    def _handle(self, delivery: Delivery, handler: Handler) -> tuple[str, str] | None:
        """Run the handler; None on success, else the dead-letter reason and detail."""
        for attempt in range(1, self.handler_attempts + 1):
            try:
                handler(delivery)
                return None
            except InvalidEvent as exc:
                return HANDLER_INVALID, str(exc)
            except Exception as exc:  # a handler bug must not kill the loop or lose the message
                log.exception("handler failed on %s (attempt %d)", _origin(delivery), attempt)
                if attempt == self.handler_attempts:
                    return HANDLER_FAILED, f"{type(exc).__name__}: {exc}"
                self._stop.wait(0.1 * 2**attempt)
        return None  # pragma: no cover - the loop always returns

    def _dead_letter(self, letter: MessageDeadLettered) -> None:
        letter = fit_for_dead_letter(letter)
        event = dead_letter_event(letter, actor=self.actor, occurred_at=int(time.time() * 1000))
        self.publisher.publish(self.dead_letter_topic, event)
        self.publisher.flush()
        self.dead_lettered += 1
        log.info(
            "dead-lettered %s[%d]@%d: %s",
            letter.topic,
            letter.partition,
            letter.offset,
            letter.reason,
        )

    def _commit(self, processed: list[Message]) -> None:
        if not processed:
            return
        offsets: dict[tuple[str, int], int] = {}
        for message in processed:
            offsets[(message.topic() or "", message.partition() or 0)] = (message.offset() or 0) + 1
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # a rebalance took the partitions: the new owner re-reads them (at-least-once)
            log.warning("offset commit failed, messages will be re-delivered: %s", exc)

    def _rewind(self, unprocessed: list[Message]) -> None:
        """Seek each partition back to its first unprocessed message so it is read again."""
        first: dict[tuple[str, int], int] = {}
        for message in unprocessed:
            if message.error() is None:
                first.setdefault(
                    (message.topic() or "", message.partition() or 0), message.offset() or 0
                )
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("seek failed, relying on committed offsets: %s", exc)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise SdlcflowError(f"fatal Kafka consumer error: {error.str()}")
        log.warning("consumer error (retrying): %s", error.str())

    def close(self) -> None:
        """Leave the group and release the connection."""
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        """While open as a context manager, SIGINT/SIGTERM ask the loop to stop (main thread)."""
        self._signals = _stop_on_signals(self._stop)
        self._signals.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            self._signals.__exit__(None, None, None)


def _origin(delivery: Delivery) -> str:
    return f"{delivery.topic}[{delivery.partition}]@{delivery.offset}"


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into `stop.set()` while the loop runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def unique_group(prefix: str) -> str:
    """A throwaway consumer group id (for tails and tests that must not share offsets)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
