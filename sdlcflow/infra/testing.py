"""Real servers for test sessions, in the order a developer expects: addresses given by
environment, then testcontainers when a Docker engine answers, then the local Maven jars.

Local servers are left running after the session (the next run starts in seconds);
containers are removed with the session. Nothing here skips: a caller that cannot get
servers gets an InfraError saying why.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from sdlcflow.infra.local import ServersInfo, ensure_up
from sdlcflow.settings import Settings

KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"  # Kafka 3.9 in KRaft mode
CASSANDRA_IMAGE = "cassandra:5.0"


def unique_name(prefix: str) -> str:
    """A fresh name valid as a Kafka topic, a consumer group and a CQL identifier."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def docker_answers() -> bool:
    """Whether a Docker engine answers a ping (the docker SDK comes with testcontainers)."""
    try:
        import docker

        client: Any = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no SDK, no socket, no permission: all mean "no Docker here"
        return False


@contextmanager
def _containers(settings: Settings) -> Iterator[Settings]:
    """Kafka and Cassandra in containers for the session; settings pointing at them."""
    from testcontainers.community.cassandra import CassandraContainer
    from testcontainers.community.kafka import KafkaContainer

    with ExitStack() as stack:
        kafka: Any = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        cassandra: Any = stack.enter_context(CassandraContainer(CASSANDRA_IMAGE))
        host, port = cassandra.get_contact_points()[0]
        yield dataclasses.replace(
            settings,
            kafka_bootstrap=str(kafka.get_bootstrap_server()),
            cassandra_hosts=(str(host),),
            cassandra_port=int(port),
            kafka_given=True,
            cassandra_given=True,
        )


@dataclasses.dataclass(frozen=True)
class SessionServers:
    """Ready servers for a test session and the settings that reach them."""

    settings: Settings
    info: ServersInfo


@contextmanager
def servers_for_tests(settings: Settings, *, timeout_s: float = 240.0) -> Iterator[SessionServers]:
    """Ready servers (topics created, schema migrated) for one test session; raises
    InfraError (or the container library's error) when none can be had."""
    if settings.kafka_given or settings.cassandra_given or not docker_answers():
        yield SessionServers(settings, ensure_up(settings, timeout_s=timeout_s))
        return
    with _containers(settings) as in_docker:
        yield SessionServers(in_docker, ensure_up(in_docker, timeout_s=timeout_s))
