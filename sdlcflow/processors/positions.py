"""Where a new coordinator group starts reading its inputs (`run processors --from-end`).

faust starts a consumer group without committed offsets at `auto.offset.reset` (earliest:
every input ever sent, which is what a coordinator of record needs). A coordinator started
beside others on a shared broker — a trial, a benchmark, a second region — should instead
begin with what arrives from now on: `start_new_group_at_end` commits the inputs' current
end offsets for a group that has none, and leaves a group that already has offsets alone, so
a restart with the same option resumes where it stopped.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from sdlcflow.errors import SdlcflowError
from sdlcflow.streams.transient import DEADLINE_S, request_timeout, retry_transient, watermarks

_MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})


class PositionError(SdlcflowError):
    """The group's offsets could not be read or committed."""


def start_new_group_at_end(
    bootstrap: str, group_id: str, topics: Iterable[str], *, deadline_s: float = DEADLINE_S
) -> bool:
    """Commit the current end of `topics` for `group_id` unless it has committed offsets.

    Returns True when the group was positioned, False when it already had offsets. Transient
    broker errors (a leader being elected right after `sdlcflow up`) are retried for up to
    `deadline_s` for the ends and again for the commit.
    """
    ends = end_offsets(bootstrap, topics, deadline_s=deadline_s)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False}
    )
    try:
        return commit_if_new(consumer, ends, deadline=time.monotonic() + deadline_s)
    except KafkaException as exc:
        raise PositionError(
            f"could not position consumer group {group_id} at the end of its inputs on "
            f"{bootstrap}: {exc}; check the broker (`sdlcflow status`) and try again"
        ) from exc
    finally:
        consumer.close()


def commit_if_new(consumer: Consumer, ends: list[TopicPartition], *, deadline: float) -> bool:
    """Commit `ends` in the consumer's group unless the group has committed offsets there;
    transient errors are retried until `deadline` (a time.monotonic() instant)."""
    asked = [TopicPartition(tp.topic, tp.partition) for tp in ends]
    committed = retry_transient(
        lambda: _checked(consumer.committed(asked, timeout=request_timeout(deadline))),
        deadline=deadline,
    )
    if any(tp.offset >= 0 for tp in committed):
        return False
    retry_transient(
        lambda: _checked(consumer.commit(offsets=ends, asynchronous=False) or []),
        deadline=deadline,
    )
    return True


def end_offsets(
    bootstrap: str, topics: Iterable[str], *, deadline_s: float = DEADLINE_S
) -> list[TopicPartition]:
    """Every partition of `topics` at its current end; a missing topic is an error."""
    probe = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"sdlcflow-position-probe-{uuid.uuid4()}"}
    )
    try:
        return partition_ends(probe, topics, where=bootstrap, deadline_s=deadline_s)
    finally:
        probe.close()


def partition_ends(
    consumer: Consumer, topics: Iterable[str], *, where: str, deadline_s: float = DEADLINE_S
) -> list[TopicPartition]:
    """Every partition of `topics` at its current end, read through `consumer` (of the broker
    at `where`); transient errors are retried for up to `deadline_s`, then reported."""
    deadline = time.monotonic() + deadline_s
    positions: list[TopicPartition] = []
    for topic in topics:
        try:
            partitions = retry_transient(
                functools.partial(_partitions, consumer, topic, where, deadline), deadline=deadline
            )
            for partition in partitions:
                _low, high = watermarks(
                    consumer, TopicPartition(topic, partition), deadline=deadline
                )
                positions.append(TopicPartition(topic, partition, high))
        except KafkaException as exc:
            raise PositionError(
                f"could not read the end offsets of {topic} on {where}: {exc}; check the broker "
                "(`sdlcflow status`) and try again"
            ) from exc
    return positions


def _partitions(consumer: Consumer, topic: str, where: str, deadline: float) -> list[int]:
    """The topic's partitions; a metadata error other than "no such topic" is raised (and
    retried when transient: a topic without a leader yet)."""
    metadata = consumer.list_topics(topic, timeout=request_timeout(deadline)).topics.get(topic)
    if (
        metadata is not None
        and metadata.error is not None
        and metadata.error.code() not in _MISSING
    ):
        raise KafkaException(metadata.error)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise PositionError(
            f"topic {topic} does not exist on {where}; run `sdlcflow up` (it creates the topics) "
            "and try again"
        )
    return sorted(metadata.partitions)


def _checked(partitions: list[TopicPartition]) -> list[TopicPartition]:
    """The offsets of a group request, raising the first partition's error (the request as a
    whole may succeed while a partition's coordinator is still loading)."""
    for tp in partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return partitions
