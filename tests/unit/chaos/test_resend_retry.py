"""A duplicate or replay fault right after a broker bounce waits for the broker, not fails."""

from __future__ import annotations

import random

import pytest
from confluent_kafka import KafkaError, KafkaException

from sdlcflow.chaos import workload


class TestResendAfterABounce:
    """Reading the records to re-produce is retried while the broker has no leaders yet."""

    def test_not_leader_for_partition_is_retried_until_the_read_succeeds(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        answers: list[object] = [
            KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)),
            KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)),
            [(b"repo", b"value", [])],
        ]

        def read(*_args: object, **_kwargs: object) -> object:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        monkeypatch.setattr(workload, "_records", read)
        monkeypatch.setattr(workload, "_READ_RETRY_S", 0.0)
        records = workload._records_retrying("b:1", "t", random.Random(1), latest=True)
        assert records == [(b"repo", b"value", [])]
        assert answers == []

    def test_a_broker_that_never_answers_fails_the_fault_with_its_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def read(*_args: object, **_kwargs: object) -> object:
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))

        monkeypatch.setattr(workload, "_records", read)
        monkeypatch.setattr(workload, "_READ_RETRY_S", 0.0)
        monkeypatch.setattr(workload, "SEND_DEADLINE_S", 0.0)
        with pytest.raises(workload.SendFailed, match="cannot read t"):
            workload._records_retrying("b:1", "t", random.Random(1), latest=True)
