"""The files `sdlcflow up` writes for the local servers, and where it finds Java and jars."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
import yaml

from sdlcflow.infra import cassandra_node, kafka_node
from sdlcflow.infra.errors import InfraError, ToolchainMissing
from sdlcflow.infra.jars import SERVERS, JarSet, jar_set_for, pom_text, pom_version
from sdlcflow.infra.toolchain import find_java17, java_major
from sdlcflow.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with files under a temporary directory (no servers involved)."""
    return dataclasses.replace(
        Settings.from_env(),
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        kafka_bootstrap="127.0.0.1:19092",
        cassandra_hosts=("127.0.0.1",),
        cassandra_port=19042,
        cassandra_storage_port=17000,
        partitions=6,
    )


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


class TestKafkaConfig:
    """server.properties makes one KRaft node with its controller on the broker port + 1."""

    def test_listeners_and_static_quorum_follow_the_bootstrap_address(
        self, settings: Settings
    ) -> None:
        props = _properties(kafka_node.server_properties(settings, settings.data_dir / "kafka"))

        assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
        assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
        assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
        assert props["process.roles"] == "broker,controller"
        assert props["log.dirs"] == str(settings.data_dir / "kafka" / "data")
        assert props["num.partitions"] == "6"
        assert props["offsets.topic.replication.factor"] == "1"
        assert props["auto.create.topics.enable"] == "false"

    def test_the_ports_checked_before_start_are_the_broker_and_the_controller(
        self, settings: Settings
    ) -> None:
        assert [port for port, _ in kafka_node.ports(settings)] == [19092, 19093]

    def test_a_bootstrap_without_a_port_is_rejected_with_the_expected_form(
        self, settings: Settings
    ) -> None:
        with pytest.raises(InfraError, match="host:port"):
            kafka_node.address(dataclasses.replace(settings, kafka_bootstrap="localhost"))

    def test_cluster_ids_are_16_random_bytes_in_unpadded_url_safe_base64(self) -> None:
        ids = {kafka_node.new_cluster_id() for _ in range(200)}

        assert len(ids) == 200
        for cluster_id in ids:
            assert not cluster_id.startswith("-")
            assert "=" not in cluster_id
            assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16

    def test_the_command_carries_the_heap_the_home_marker_and_the_config(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        home = settings.data_dir / "kafka"
        jars = JarSet("kafka", "4.1.1", tmp_path / "lib")
        command = kafka_node.command(settings, Path("/jdk/bin/java"), jars, home)

        assert command[0] == "/jdk/bin/java"
        assert "-Xmx512m" in command
        assert f"-Dsdlcflow.home={home}" in command
        assert command[-2:] == [kafka_node.MAIN_CLASS, str(home / "server.properties")]


class TestCassandraConfig:
    """cassandra.yaml is valid YAML for one node with every directory under its home."""

    def test_yaml_names_the_ports_and_puts_every_directory_under_the_home(
        self, settings: Settings
    ) -> None:
        home = settings.data_dir / "cassandra"
        config = yaml.safe_load(cassandra_node.write_config(settings, home).read_text())

        assert config["native_transport_port"] == 19042
        assert config["storage_port"] == 17000
        assert config["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:17000"
        assert config["data_file_directories"] == [str(home / "data")]
        for key in ("commitlog_directory", "saved_caches_directory", "hints_directory"):
            assert Path(config[key]).parent == home
        assert config["num_tokens"] == 1
        assert config["auto_snapshot"] is False

    def test_the_command_has_the_java17_module_flags_the_jamm_agent_and_fast_start(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        lib = tmp_path / "lib"
        lib.mkdir()
        (lib / "jamm-0.4.0.jar").write_bytes(b"")
        home = settings.data_dir / "cassandra"
        command = cassandra_node.command(
            settings, Path("/jdk/bin/java"), JarSet("cassandra", "5.0.6", lib), home
        )

        assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in command
        assert f"-javaagent:{lib / 'jamm-0.4.0.jar'}" in command
        assert "-Dcassandra.skip_wait_for_gossip_to_settle=0" in command
        assert f"-Dcassandra.config=file://{home / 'cassandra.yaml'}" in command
        assert "-Xmx1g" in command
        assert command[-1] == cassandra_node.MAIN_CLASS


class TestJars:
    """Each server's pom is shipped, versioned, and fetched into its own directory."""

    def test_poms_name_kafka_4_and_cassandra_5_0(self) -> None:
        assert pom_version(pom_text("kafka")).startswith("4.")
        assert pom_version(pom_text("cassandra")).startswith("5.0.")

    def test_each_server_has_its_own_jar_directory_under_the_cache(self, tmp_path: Path) -> None:
        directories = {jar_set_for(server, tmp_path).directory for server in SERVERS}

        assert len(directories) == 2
        assert all(tmp_path in d.parents for d in directories)

    def test_a_missing_jar_is_reported_with_the_fix(self, tmp_path: Path) -> None:
        with pytest.raises(InfraError, match="delete that directory"):
            JarSet("cassandra", "5.0.6", tmp_path).find("jamm-")


def _fake_jdk(root: Path, version: str) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "java").write_text("#!/bin/sh\n")
    (root / "release").write_text(f'IMPLEMENTOR="test"\nJAVA_VERSION="{version}"\n')
    return root


class TestToolchain:
    """Java is chosen by the version its release file declares, never by PATH order."""

    def test_the_major_version_is_read_from_the_release_file(self, tmp_path: Path) -> None:
        assert java_major(_fake_jdk(tmp_path / "jdk", "17.0.15")) == 17
        assert java_major(tmp_path / "nothing") is None

    def test_an_explicit_java_home_of_another_version_is_refused_with_the_fix(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SDLCFLOW_JAVA_HOME", str(_fake_jdk(tmp_path / "jdk25", "25.0.1")))

        with pytest.raises(ToolchainMissing, match="exactly Java 17"):
            find_java17()

    def test_an_explicit_java_17_home_wins(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        jdk = _fake_jdk(tmp_path / "jdk17", "17.0.9")
        monkeypatch.setenv("SDLCFLOW_JAVA_HOME", str(jdk))

        assert find_java17() == jdk
