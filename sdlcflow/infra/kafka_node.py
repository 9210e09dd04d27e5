"""The local Kafka node: one KRaft process that is broker and controller, from Maven jars.

The controller listens on the broker port + 1 (9093 beside 9092). Storage is formatted once
with a random cluster id; `meta.properties` in the log dir says it was.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path

from confluent_kafka.admin import AdminClient

from sdlcflow.infra.errors import InfraError
from sdlcflow.infra.jars import JarSet
from sdlcflow.infra.process import home_marker
from sdlcflow.infra.templates import render
from sdlcflow.settings import Settings

MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_FORMAT_TIMEOUT_S = 120.0


def address(settings: Settings) -> tuple[str, int]:
    """Host and port of the first bootstrap server, where the local broker listens."""
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise InfraError(
            f"SDLCFLOW_KAFKA_BOOTSTRAP={settings.kafka_bootstrap!r} is not host:port[,host:port]; "
            "set it like 127.0.0.1:9092"
        )
    return host.strip("[]"), int(port)


def ports(settings: Settings) -> list[tuple[int, str]]:
    """The ports the local node binds, with what each is for."""
    _, port = address(settings)
    return [(port, "Kafka broker"), (port + 1, "Kafka controller")]


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64, no padding, not starting with '-' (StorageTool's rule)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(settings: Settings, home: Path) -> str:
    host, port = address(settings)
    return render(
        "kafka.properties",
        host=host,
        port=port,
        controller_port=port + 1,
        log_dirs=home / "data",
        partitions=settings.partitions,
    )


def write_config(settings: Settings, home: Path) -> Path:
    """Write server.properties and the log4j2 config into the server directory."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(server_properties(settings, home))
    (home / "log4j2.xml").write_text(render("kafka-log4j2.xml"))
    return config


def is_formatted(home: Path) -> bool:
    return (home / "data" / "meta.properties").is_file()


def format_storage(java: Path, jars: JarSet, home: Path) -> None:
    """Format the KRaft log dir once (a fresh cluster id); a no-op when already formatted."""
    if is_formatted(home):
        return
    command = [
        str(java),
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}",
        "-cp",
        jars.classpath,
        _STORAGE_TOOL,
        "format",
        "-t",
        new_cluster_id(),
        "-c",
        str(home / "server.properties"),
        "--ignore-formatted",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_FORMAT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"formatting Kafka storage in {home / 'data'} took over 120 s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise InfraError(
            f"formatting Kafka storage in {home / 'data'} failed (exit {done.returncode}):\n"
            f"{output[-3000:]}\nIf the directory holds a broken cluster, remove it and run again"
        )


def command(settings: Settings, java: Path, jars: JarSet, home: Path) -> list[str]:
    """The java command line of the broker."""
    heap = settings.kafka_heap
    return [
        str(java),
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}",
        f"-Dkafka.logs.dir={home / 'logs'}",
        home_marker(home),
        "-cp",
        jars.classpath,
        MAIN_CLASS,
        str(home / "server.properties"),
    ]


def metadata_answers(bootstrap: str, timeout_s: float) -> bool:
    """Whether the cluster answers a metadata request (the broker is really ready)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception:  # librdkafka raises KafkaException on timeout; any failure is "not yet"
        return False
    return bool(metadata.brokers)
