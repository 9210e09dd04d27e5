"""Session-wide real servers for integration tests.

Only tests that ask for `settings`, `kafka_bootstrap`, `cassandra_session` or `admin` get
servers; unit tests never start any. The servers come from the addresses given by
SDLCFLOW_KAFKA_BOOTSTRAP / SDLCFLOW_CASSANDRA_HOSTS, else testcontainers when a Docker engine
answers, else the local jars (`sdlcflow up`, left running for the next session). If none can
be had the tests fail with the reason: integration tests are never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from cassandra.cluster import Session
from confluent_kafka.admin import AdminClient

from sdlcflow.infra.cassandra_node import cluster_for
from sdlcflow.infra.errors import InfraError
from sdlcflow.infra.testing import SessionServers, servers_for_tests
from sdlcflow.infra.testing import unique_name as _unique_name
from sdlcflow.infra.topics import BrokerFootprint, forgotten_at_exit
from sdlcflow.settings import Settings

_NO_SERVERS = "integration tests need real Kafka and Cassandra, and they could not be had:"


@pytest.fixture(scope="session")
def _servers() -> Iterator[SessionServers]:
    with ExitStack() as stack:
        try:
            servers = stack.enter_context(servers_for_tests(Settings.from_env()))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, InfraError) else repr(exc)
            pytest.fail(f"{_NO_SERVERS}\n{reason}", pytrace=False)
        yield servers


@pytest.fixture(scope="session")
def settings(_servers: SessionServers) -> Settings:
    """Settings whose addresses reach the session's ready servers."""
    return _servers.settings


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings) -> str:
    """bootstrap.servers of the session's broker (every catalog topic exists)."""
    return settings.kafka_bootstrap


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    """A confluent-kafka AdminClient on the session's broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def footprint(kafka_bootstrap: str) -> Iterator[BrokerFootprint]:
    """Names the topics, groups and faust app ids a test makes; they are deleted from the shared
    broker after the test (fixtures that stop the test's processes end first)."""
    with forgotten_at_exit(kafka_bootstrap) as made:
        yield made


@pytest.fixture(scope="session")
def cassandra_session(settings: Settings) -> Iterator[Session]:
    """A cassandra-driver Session on the migrated keyspace (`sdlcflow` by default)."""
    cluster = cluster_for(settings)
    try:
        yield cluster.connect(settings.keyspace)
    finally:
        cluster.shutdown()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Makes fresh names (prefix_<hex>) valid as topic, group and CQL table names."""
    return _unique_name
