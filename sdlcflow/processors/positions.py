"""Where a new coordinator group starts reading its inputs (`run processors --from-end`).

faust starts a consumer group without committed offsets at `auto.offset.reset` (earliest:
every input ever sent, which is what a coordinator of record needs). A coordinator started
beside others on a shared broker — a trial, a benchmark, a second region — should instead
begin with what arrives from now on: `start_new_group_at_end` commits the inputs' current
end offsets for a group that has none, and leaves a group that already has offsets alone, so
a restart with the same option resumes where it stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from sdlcflow.errors import SdlcflowError

METADATA_TIMEOUT_S = 10.0


class PositionError(SdlcflowError):
    """The group's offsets could not be read or committed."""


def start_new_group_at_end(bootstrap: str, group_id: str, topics: Iterable[str]) -> bool:
    """Commit the current end of `topics` for `group_id` unless it has committed offsets.

    Returns True when the group was positioned, False when it already had offsets.
    """
    ends = end_offsets(bootstrap, topics)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False}
    )
    try:
        committed = consumer.committed(
            [TopicPartition(tp.topic, tp.partition) for tp in ends], timeout=METADATA_TIMEOUT_S
        )
        if any(tp.offset >= 0 for tp in committed):
            return False
        consumer.commit(offsets=ends, asynchronous=False)
        return True
    except KafkaException as exc:
        raise PositionError(
            f"could not position consumer group {group_id} at the end of its inputs on "
            f"{bootstrap}: {exc}; check the broker (`sdlcflow status`) and try again"
        ) from exc
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics` at its current end; a missing topic is an error."""
    probe = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"sdlcflow-position-probe-{uuid.uuid4()}"}
    )
    try:
        positions: list[TopicPartition] = []
        for topic in topics:
            metadata = probe.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                raise PositionError(
                    f"topic {topic} does not exist on {bootstrap}; run `sdlcflow up` (it creates "
                    "the topics) and try again"
                )
            for partition in sorted(metadata.partitions):
                _, high = probe.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S
                )
                positions.append(TopicPartition(topic, partition, high))
        return positions
    finally:
        probe.close()
