"""Consumer lag, group assignment and dead-letter size, read from the broker with the admin API.

Lag is the high watermark minus the group's committed offset per partition: what the group
still has to read, as the broker sees it, whichever process owns the partition. A `LagWatcher`
thread refreshes the gauges every few seconds in each service that serves /metrics, and
`sdlcflow status` reads the same functions once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from sdlcflow.observability import metrics
from sdlcflow.streams.topics import DEAD_LETTER

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]
EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PartitionLag:
    """One partition of a group's subscription: where the group is and where the log ends."""

    group: str
    topic: str
    partition: int
    committed: int
    high: int

    @property
    def lag(self) -> int:
        return max(0, self.high - self.committed)


@dataclass(frozen=True)
class MemberAssignment:
    """Which partitions one member of a consumer group owns."""

    group: str
    member: str
    host: str
    partitions: tuple[tuple[str, int], ...]


def _watermarks(
    admin: AdminClient, partitions: Iterable[tuple[str, int]], spec: OffsetSpec
) -> dict[tuple[str, int], int]:
    request = {TopicPartition(topic, partition): spec for topic, partition in partitions}
    if not request:
        return {}
    futures = admin.list_offsets(request, request_timeout=TIMEOUT_S)
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


def group_lag(admin: AdminClient, group: str) -> list[PartitionLag]:
    """Lag of every partition the group has committed an offset on, sorted."""
    request = [ConsumerGroupTopicPartitions(group)]
    future = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group]
    committed = {
        (tp.topic, tp.partition): tp.offset
        for tp in future.result().topic_partitions or []
        if tp.offset >= 0
    }
    highs = _watermarks(admin, committed, LATEST)
    return [
        PartitionLag(group, topic, partition, committed[(topic, partition)], high)
        for (topic, partition), high in sorted(highs.items())
    ]


def topic_size(admin: AdminClient, topic: str) -> int:
    """Records retained on a topic: high minus low watermark over its partitions."""
    described = admin.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
    if described is None or described.error is not None:
        return 0
    partitions = [(topic, p) for p in described.partitions]
    highs = _watermarks(admin, partitions, LATEST)
    lows = _watermarks(admin, partitions, EARLIEST)
    return sum(max(0, highs[tp] - lows.get(tp, 0)) for tp in highs)


def assignments(admin: AdminClient, group: str) -> list[MemberAssignment]:
    """The members of a consumer group and the partitions each owns now."""
    described = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result()
    members = []
    for member in described.members:
        owned = member.assignment.topic_partitions if member.assignment else []
        members.append(
            MemberAssignment(
                group,
                member.member_id,
                member.host,
                tuple(sorted((tp.topic, tp.partition) for tp in owned)),
            )
        )
    return sorted(members, key=lambda m: m.member)


def record_lag(lags: Sequence[PartitionLag]) -> None:
    """Set the lag gauges to these partitions' lag."""
    for lag in lags:
        metrics.CONSUMER_LAG.labels(lag.group, lag.topic, str(lag.partition)).set(lag.lag)


class LagWatcher:
    """Refreshes consumer lag of `groups` and the dead-letter size every `interval_s` seconds.

    A daemon thread with its own admin client; broker errors are logged and retried at the next
    interval (the gauges keep their last values meanwhile).
    """

    def __init__(
        self,
        bootstrap: str,
        groups: Sequence[str],
        *,
        dead_letter_topic: str = DEAD_LETTER,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.groups = tuple(groups)
        self.dead_letter_topic = dead_letter_topic
        self.interval_s = interval_s
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sdlcflow-lag", daemon=True)

    def start(self) -> LagWatcher:
        self._thread.start()
        return self

    def refresh(self) -> None:
        """Read the broker once and update the gauges."""
        for group in self.groups:
            record_lag(group_lag(self._admin, group))
        size = topic_size(self._admin, self.dead_letter_topic)
        metrics.DEAD_LETTER_SIZE.labels(self.dead_letter_topic).set(size)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except (KafkaException, RuntimeError, ValueError) as exc:
                log.warning("lag not refreshed (retry in %.0f s): %s", self.interval_s, exc)
            self._stop.wait(self.interval_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=TIMEOUT_S)
