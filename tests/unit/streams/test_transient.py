"""Which broker errors a start-up request is sent again for."""

from __future__ import annotations

from confluent_kafka import KafkaError

from sdlcflow.streams.transient import is_transient


class TestIsTransient:
    """librdkafka's retriable flag counts, and so do the leader and coordinator moves it leaves
    unflagged; an error a retry cannot cure does not."""

    def test_an_error_the_client_flags_retriable_is_transient(self) -> None:
        assert is_transient(KafkaError(KafkaError.KAFKA_STORAGE_ERROR, "disk", retriable=True))

    def test_a_leader_being_elected_is_transient_unflagged(self) -> None:
        assert is_transient(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, "moved"))

    def test_an_authorization_failure_is_not_transient(self) -> None:
        assert not is_transient(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))
