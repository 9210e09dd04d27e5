"""Riding out a broker's transient errors where a command positions itself at start-up.

Right after `sdlcflow up`, or while partition leadership moves, metadata, watermark and group
offset requests fail for a moment with NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE, a
coordinator that is still loading, or a timeout; the same request a fraction of a second later
succeeds. A command that crashed on the first of those (`bench load` right after `up` did) is
retried here with a short backoff up to a deadline instead; any other error is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)

T = TypeVar("T")

DEADLINE_S = 30.0  # how long a start-up request keeps being retried
REQUEST_TIMEOUT_S = 10.0  # one metadata or offsets request
_MIN_REQUEST_TIMEOUT_S = 1.0
_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 1.0

# errors librdkafka does not always flag retriable() although a retry is what they call for;
# a partition unknown to the broker asked for offsets is one its metadata has not reached yet
# (callers find a topic missing by its metadata first, and say so at once)
TRANSIENT_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._WAIT_COORD,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
    }
)


def is_transient(error: KafkaError) -> bool:
    """Whether the same request may succeed if sent again shortly."""
    return error.retriable() or error.code() in TRANSIENT_CODES


def retry_transient(call: Callable[[], T], *, deadline: float) -> T:
    """`call()`, sent again after transient Kafka errors until `deadline` (a time.monotonic()
    instant); the last error is raised once the deadline has passed, any other at once."""
    backoff = _FIRST_BACKOFF_S
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError) or not is_transient(error):
                raise
            if time.monotonic() + backoff > deadline:
                raise
            log.info("transient broker error, retrying in %.1f s: %s", backoff, error.str())
        time.sleep(backoff)  # the broker elects a leader or loads the group meanwhile
        backoff = min(2 * backoff, _MAX_BACKOFF_S)


def watermarks(
    consumer: Consumer, partition: TopicPartition, *, deadline: float
) -> tuple[int, int]:
    """The partition's (low, high) offsets, high being the offset its next record gets,
    retrying transient errors until `deadline`."""
    return retry_transient(
        lambda: consumer.get_watermark_offsets(partition, timeout=request_timeout(deadline)),
        deadline=deadline,
    )


def request_timeout(deadline: float) -> float:
    """One request's timeout: what is left of the deadline, within bounds."""
    return min(REQUEST_TIMEOUT_S, max(_MIN_REQUEST_TIMEOUT_S, deadline - time.monotonic()))
