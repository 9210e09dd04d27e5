"""Positioning a new group at its inputs' end rides out a broker's transient errors.

Right after `sdlcflow up` a watermark request failed with NOT_LEADER_FOR_PARTITION and
`bench load` crashed; the same request a moment later succeeds. A fake consumer answers with
the errors a broker gives while it elects leaders or loads a group coordinator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sdlcflow.processors.positions import PositionError, commit_if_new, partition_ends

TOPIC = "sdlc.change-requests"
ENDS = {0: 7, 1: 3}


@dataclass
class _Topic:
    partitions: dict[int, object]
    error: KafkaError | None = None


@dataclass
class _Metadata:
    topics: dict[str, _Topic]


@dataclass
class FlakyBroker:
    """A consumer whose first `failures` requests of each kind fail with `error`."""

    error: int = KafkaError.NOT_LEADER_FOR_PARTITION
    failures: int = 2
    committed_offsets: dict[int, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def _fail_at_first(self, request: str) -> None:
        self.calls[request] = self.calls.get(request, 0) + 1
        if self.calls[request] <= self.failures:
            raise KafkaException(KafkaError(self.error, f"{request} failed"))

    def list_topics(self, topic: str, timeout: float) -> _Metadata:
        self._fail_at_first("metadata")
        return _Metadata({TOPIC: _Topic(dict.fromkeys(ENDS))})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self._fail_at_first("watermarks")
        return 0, ENDS[tp.partition]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self._fail_at_first("committed")
        return [
            TopicPartition(tp.topic, tp.partition, self.committed_offsets.get(tp.partition, -1001))
            for tp in partitions
        ]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        self._fail_at_first("commit")
        self.committed_offsets = {tp.partition: tp.offset for tp in offsets}
        return offsets


def _ends() -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p, end) for p, end in ENDS.items()]


def _soon() -> float:
    return time.monotonic() + 30.0


class TestEndOffsets:
    """The inputs' ends are read despite transient errors, and a lasting error is reported."""

    @pytest.mark.parametrize(
        "error",
        ["NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "_TIMED_OUT", "REQUEST_TIMED_OUT"],
    )
    def test_ends_are_read_after_transient_errors(self, error: str) -> None:
        broker = FlakyBroker(error=getattr(KafkaError, error))

        ends = partition_ends(broker, [TOPIC], where="broker:9092")

        assert [(tp.partition, tp.offset) for tp in ends] == list(ENDS.items())
        assert broker.calls == {"metadata": 3, "watermarks": 2 + len(ENDS)}

    def test_an_error_that_retrying_cannot_cure_is_reported_at_once(self) -> None:
        broker = FlakyBroker(error=KafkaError.TOPIC_AUTHORIZATION_FAILED)

        with pytest.raises(PositionError, match=r"could not read the end offsets of .*broker:9092"):
            partition_ends(broker, [TOPIC], where="broker:9092")
        assert broker.calls == {"metadata": 1}

    def test_transient_errors_past_the_deadline_are_reported(self) -> None:
        broker = FlakyBroker(failures=1_000_000)

        with pytest.raises(PositionError, match=r"NOT_LEADER_FOR_PARTITION.*sdlcflow status"):
            partition_ends(broker, [TOPIC], where="broker:9092", deadline_s=0.0)

    def test_a_missing_topic_is_reported_without_retrying(self) -> None:
        broker = FlakyBroker(failures=0)

        with pytest.raises(PositionError, match=r"topic sdlc\.nowhere does not exist"):
            partition_ends(broker, ["sdlc.nowhere"], where="broker:9092")
        assert broker.calls == {"metadata": 1}


class TestCommitIfNew:
    """A new group's offsets are committed despite a group coordinator that is still loading."""

    def test_a_new_group_is_committed_after_transient_errors(self) -> None:
        broker = FlakyBroker(error=KafkaError.COORDINATOR_LOAD_IN_PROGRESS)

        assert commit_if_new(broker, _ends(), deadline=_soon()) is True
        assert broker.committed_offsets == ENDS
        assert broker.calls == {"committed": 3, "commit": 3}

    def test_a_group_with_offsets_is_left_alone(self) -> None:
        broker = FlakyBroker(error=KafkaError.NOT_COORDINATOR, committed_offsets={0: 1})

        assert commit_if_new(broker, _ends(), deadline=_soon()) is False
        assert broker.committed_offsets == {0: 1}
        assert "commit" not in broker.calls
