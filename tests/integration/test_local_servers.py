"""The real servers `sdlcflow up` provides: a broker that carries bytes, a Cassandra that keeps
rows, an idempotent `up`, a `status --json` scripts can read, and clear errors when a port is
taken or a server dies while starting."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cassandra.cluster import Session
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sdlcflow.cli import cli
from sdlcflow.infra import local
from sdlcflow.infra.errors import PortTaken, ServerDied
from sdlcflow.infra.topics import BrokerFootprint
from sdlcflow.settings import Settings
from sdlcflow.streams.topics import catalog

pytestmark = pytest.mark.integration


def _consume(bootstrap: str, topic: str, group: str, count: int, timeout_s: float) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            values.append(message.value() or b"")
    finally:
        consumer.close()
    return values


class TestBroker:
    """The broker stores and hands back raw bytes on a topic created through the admin API."""

    def test_bytes_produced_to_a_new_topic_are_consumed_back_unchanged(
        self,
        kafka_bootstrap: str,
        admin: AdminClient,
        unique_name: Callable[[str], str],
        footprint: BrokerFootprint,
    ) -> None:
        topic = footprint.topic(unique_name("raw"))
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[
            topic
        ].result(timeout=30)
        payloads = [bytes([n, 0, 255, n]) + f"payload-{n}".encode() for n in range(5)]
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        for payload in payloads:
            producer.produce(topic, key=b"repo-a", value=payload)
        assert producer.flush(30) == 0

        group = footprint.group(unique_name("group"))
        received = _consume(kafka_bootstrap, topic, group, len(payloads), 60)

        # one key -> one partition -> the order is kept
        assert received == payloads

    def test_every_catalog_topic_exists_with_the_configured_partition_count(
        self, admin: AdminClient, settings: Settings
    ) -> None:
        topics = admin.list_topics(timeout=10).topics
        for spec in catalog(settings.partitions):
            assert spec.name in topics
            assert len(topics[spec.name].partitions) == settings.partitions


class TestCassandra:
    """Cassandra keeps a row written through the session fixture."""

    def test_a_written_row_is_read_back(
        self, cassandra_session: Session, unique_name: Callable[[str], str]
    ) -> None:
        table = unique_name("rows")
        cassandra_session.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, body blob)")
        try:
            cassandra_session.execute(
                f"INSERT INTO {table} (id, body) VALUES (%s, %s)", ("event-1", b"\x00\x01raw")
            )
            row = cassandra_session.execute(
                f"SELECT body FROM {table} WHERE id = %s", ("event-1",)
            ).one()
            assert row is not None
            assert row.body == b"\x00\x01raw"
        finally:
            cassandra_session.execute(f"DROP TABLE IF EXISTS {table}")


class TestEnsureUp:
    """A second `up` starts nothing, creates nothing and migrates nothing."""

    def test_up_twice_changes_nothing_the_second_time(self, settings: Settings) -> None:
        first = local.ensure_up(settings)
        second = local.ensure_up(settings)

        assert second.started == ()
        assert second.topics.created == ()
        assert second.migrations.applied == ()
        assert (second.kafka.pid, second.cassandra.pid) == (first.kafka.pid, first.cassandra.pid)
        assert second.kafka.ready and second.cassandra.ready


def _cli_env(settings: Settings) -> dict[str, str]:
    """Environment that makes `Settings.from_env()` in the CLI equal the session's settings."""
    env = {
        "SDLCFLOW_DATA_DIR": str(settings.data_dir),
        "SDLCFLOW_CACHE_DIR": str(settings.cache_dir),
        "SDLCFLOW_KEYSPACE": settings.keyspace,
        "SDLCFLOW_PARTITIONS": str(settings.partitions),
        "SDLCFLOW_CASSANDRA_PORT": str(settings.cassandra_port),
    }
    if settings.kafka_given:
        env["SDLCFLOW_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    if settings.cassandra_given:
        env["SDLCFLOW_CASSANDRA_HOSTS"] = ",".join(settings.cassandra_hosts)
    return env


class TestStatusJson:
    """`sdlcflow status --json` prints one document naming servers, topics and schema state."""

    def test_status_json_reports_ready_servers_topics_and_migration_version(
        self, settings: Settings
    ) -> None:
        result = CliRunner().invoke(cli, ["status", "--json"], env=_cli_env(settings))

        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["healthy"] is True
        for name in ("kafka", "cassandra"):
            server = document["servers"][name]
            assert set(server) == {"name", "address", "managed", "pid", "running", "ready", "log"}
            assert server["ready"] is True
            assert server["managed"] is not (
                settings.kafka_given if name == "kafka" else settings.cassandra_given
            )
        assert document["topics"]["missing"] == []
        assert set(document["topics"]["present"]) == {s.name for s in catalog(settings.partitions)}
        keyspace = document["keyspace"]
        assert keyspace["name"] == settings.keyspace
        assert keyspace["exists"] is True
        assert keyspace["migration_version"] == keyspace["latest_migration"]
        assert keyspace["pending"] == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _free_port_pair() -> int:
    """A port p with p+1 free too (Kafka's controller listens on broker port + 1)."""
    for _ in range(50):
        port = _free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports found on 127.0.0.1")


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A socket that holds a free port, as some unrelated program would."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder


def _isolated(settings: Settings, data_dir: Path, **changes: object) -> Settings:
    """Settings for a throw-away local server: own data dir, never a given address."""
    return dataclasses.replace(
        settings, data_dir=data_dir, kafka_given=False, cassandra_given=False, **changes
    )


class TestStartErrors:
    """Starting a server fails fast with a message that says what is wrong and what to read."""

    def test_a_broker_port_held_by_another_program_is_reported_not_hung_on(
        self, settings: Settings, tmp_path: Path, listening_socket: socket.socket
    ) -> None:
        port = listening_socket.getsockname()[1]
        taken = _isolated(settings, tmp_path, kafka_bootstrap=f"127.0.0.1:{port}")

        with pytest.raises(PortTaken) as error:
            local.start_server(taken, "kafka", timeout_s=30)

        message = str(error.value)
        assert f"127.0.0.1:{port}" in message
        assert "SDLCFLOW_KAFKA_BOOTSTRAP" in message
        assert not (tmp_path / "kafka" / "kafka.pid").exists()

    def test_a_cql_port_held_by_another_program_is_reported_not_hung_on(
        self, settings: Settings, tmp_path: Path, listening_socket: socket.socket
    ) -> None:
        port = listening_socket.getsockname()[1]
        taken = _isolated(
            settings,
            tmp_path,
            cassandra_hosts=("127.0.0.1",),
            cassandra_port=port,
            cassandra_storage_port=_free_port(),
        )

        with pytest.raises(PortTaken) as error:
            local.start_server(taken, "cassandra", timeout_s=30)

        assert f"127.0.0.1:{port}" in str(error.value)
        assert "SDLCFLOW_CASSANDRA_HOSTS" in str(error.value)

    def test_a_broker_that_dies_while_starting_is_reported_with_its_log(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        # the JVM refuses a malformed heap size and exits at once: a deterministic early death
        doomed = _isolated(
            settings,
            tmp_path,
            kafka_bootstrap=f"127.0.0.1:{_free_port_pair()}",
            kafka_heap="not-a-size",
        )

        with pytest.raises(ServerDied) as error:
            local.start_server(doomed, "kafka", timeout_s=60)

        message = str(error.value)
        log_path = tmp_path / "kafka" / "kafka.log"
        assert str(log_path) in message
        assert "not-a-size" in message  # the JVM's own complaint, from the log's tail
        assert not (tmp_path / "kafka" / "kafka.pid").exists()
        assert local.running_servers(doomed) == ()


class TestOneServer:
    """Chaos tests can kill one server and start it again; what it stored survives."""

    def test_a_killed_broker_restarts_and_still_serves_what_it_stored(
        self, settings: Settings, tmp_path: Path, unique_name: Callable[[str], str]
    ) -> None:
        own = _isolated(settings, tmp_path, kafka_bootstrap=f"127.0.0.1:{_free_port_pair()}")
        try:
            first = local.start_server(own, "kafka", timeout_s=120)
            topic = unique_name("survivor")
            own_admin = AdminClient({"bootstrap.servers": own.kafka_bootstrap})
            own_admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[
                topic
            ].result(timeout=30)
            producer = Producer({"bootstrap.servers": own.kafka_bootstrap, "acks": "all"})
            producer.produce(topic, value=b"before the crash")
            assert producer.flush(30) == 0

            assert local.stop_server(own, "kafka", kill=True) is True
            assert local.running_servers(own) == ()
            second = local.start_server(own, "kafka", timeout_s=120)

            assert second.ready and second.pid != first.pid
            received = _consume(own.kafka_bootstrap, topic, unique_name("group"), 1, 60)
            assert received == [b"before the crash"]
        finally:
            local.stop_server(own, "kafka")

    def test_a_killed_cassandra_restarts_with_its_schema(
        self, settings: Settings, tmp_path: Path, unique_name: Callable[[str], str]
    ) -> None:
        own = _isolated(
            settings,
            tmp_path,
            cassandra_port=_free_port(),
            cassandra_storage_port=_free_port(),
        )
        keyspace = unique_name("survivor").replace("-", "_")
        try:
            first = local.start_server(own, "cassandra", timeout_s=240)
            with local.cql_session(own) as session:
                session.execute(
                    f"CREATE KEYSPACE {keyspace} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}"
                )
                session.execute(f"CREATE TABLE {keyspace}.facts (id text PRIMARY KEY, body text)")

            assert local.stop_server(own, "cassandra", kill=True) is True
            second = local.start_server(own, "cassandra", timeout_s=240)

            assert second.ready and second.pid != first.pid
            # the keyspace and table survive (with unsafesystem they were gone: InvalidRequest);
            # rows acknowledged within the last commitlog_sync_period may not, as in any
            # periodic-sync Cassandra (production runs a replication factor of 3)
            with local.cql_session(own) as session:
                rows = list(session.execute(f"SELECT body FROM {keyspace}.facts"))
            assert rows == []
        finally:
            local.stop_server(own, "cassandra")
