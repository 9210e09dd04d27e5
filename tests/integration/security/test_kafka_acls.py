"""Kafka itself keeps agents off the coordinator's topics: TLS, SASL/SCRAM logins and ACLs per
principal on a private broker (own ports and data dir; the shared broker is not touched)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from secure_broker import ClientValue, SecureBroker, secure_broker

from sdlcflow.settings import Settings
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR

pytestmark = pytest.mark.integration

AGENT, COORDINATOR_USER = "agent-lint", "coordinator"
DELIVERY_TIMEOUT_S = 30.0


def _allow(
    principal: str, resource: ResourceType, name: str, *ops: AclOperation
) -> list[AclBinding]:
    return [
        AclBinding(
            resource,
            name,
            ResourcePatternType.LITERAL,
            f"User:{principal}",
            "*",
            op,
            AclPermissionType.ALLOW,
        )
        for op in ops
    ]


def _least_privilege_acls() -> list[AclBinding]:
    """The agent writes agent events only; the coordinator writes its decision log and reads
    the agents' events (docs/security.md lists the full table)."""
    topic, write, read, describe = (
        ResourceType.TOPIC,
        AclOperation.WRITE,
        AclOperation.READ,
        AclOperation.DESCRIBE,
    )
    return [
        *_allow(AGENT, topic, AGENT_EVENTS, write, describe),
        *_allow(AGENT, topic, COORDINATOR, read, describe),
        *_allow(COORDINATOR_USER, topic, COORDINATOR, write, describe),
        *_allow(COORDINATOR_USER, topic, AGENT_EVENTS, read, describe),
    ]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[SecureBroker]:
    home = tmp_path_factory.mktemp("secure-kafka")
    with secure_broker(home, (AGENT, COORDINATOR_USER), settings) as running:
        admin = AdminClient(running.client_config("admin"))
        for future in admin.create_topics(
            [
                NewTopic(t, num_partitions=1, replication_factor=1)
                for t in (AGENT_EVENTS, COORDINATOR)
            ]
        ).values():
            future.result(timeout=60)
        for future in admin.create_acls(_least_privilege_acls()).values():
            future.result(timeout=60)
        yield running


def _produce(config: dict[str, ClientValue], topic: str) -> KafkaError | None:
    """Produce one record and wait for its delivery report: None when written, else the error."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000)})
    producer.produce(
        topic, b"value", key=b"acme/web", on_delivery=lambda err, _m: outcome.append(err)
    )
    producer.flush(DELIVERY_TIMEOUT_S + 5)
    assert outcome, f"no delivery report for {topic} within {DELIVERY_TIMEOUT_S} s"
    return outcome[0]


class TestAclsPerPrincipal:
    """Only the coordinator principal can write the decision log; agents write agent events."""

    def test_agent_cannot_write_to_the_coordinator_topic(self, broker: SecureBroker) -> None:
        error = _produce(broker.client_config(AGENT), COORDINATOR)
        assert error is not None
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    def test_coordinator_can_write_to_the_coordinator_topic(self, broker: SecureBroker) -> None:
        assert _produce(broker.client_config(COORDINATOR_USER), COORDINATOR) is None

    def test_agent_can_write_agent_events(self, broker: SecureBroker) -> None:
        assert _produce(broker.client_config(AGENT), AGENT_EVENTS) is None

    def test_coordinator_cannot_impersonate_an_agent_topic_writer(
        self, broker: SecureBroker
    ) -> None:
        error = _produce(broker.client_config(COORDINATOR_USER), AGENT_EVENTS)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


class TestListenerSecurity:
    """No login without the right password, no connection without TLS to the trusted CA."""

    def test_wrong_password_is_refused(self, broker: SecureBroker) -> None:
        config = broker.client_config(AGENT) | {"sasl.password": "not-the-password"}
        admin = AdminClient(config | {"log_level": 0})
        with pytest.raises(KafkaException) as info:
            admin.list_topics(timeout=10)
        assert info.value.args[0].code() in (
            KafkaError._AUTHENTICATION,
            KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError._TRANSPORT,
            KafkaError._TIMED_OUT,
        )

    def test_plaintext_client_gets_no_metadata(self, broker: SecureBroker) -> None:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)

    def test_client_that_does_not_trust_the_ca_cannot_connect(
        self, broker: SecureBroker, tmp_path: Path
    ) -> None:
        from secure_broker import make_certificates

        other_ca, _ = make_certificates(tmp_path)
        admin = AdminClient(
            broker.client_config(AGENT, log_level=0) | {"ssl.ca.location": str(other_ca)}
        )
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
