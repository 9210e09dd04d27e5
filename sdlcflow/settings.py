"""Connection and location settings, read from the environment so one code path serves a laptop,
CI and an existing cluster alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    """Where sdlcflow finds its servers and keeps its files.

    `kafka_given` / `cassandra_given` are true when the user pointed at an existing cluster;
    then `sdlcflow up` starts nothing and only checks that the servers answer.
    """

    kafka_bootstrap: str
    cassandra_hosts: tuple[str, ...]
    cassandra_port: int
    keyspace: str
    schema_registry_url: str | None
    partitions: int
    data_dir: Path
    cache_dir: Path
    kafka_given: bool
    cassandra_given: bool
    # Cassandra's inter-node port; only the local node started by `sdlcflow up` uses it
    cassandra_storage_port: int = 7000
    # replication factor of the keyspace the first migration creates (1 = one local node)
    cassandra_replication_factor: int = 1
    # JVM heaps of the local servers: both together stay within ~2 GiB on a 2-core machine
    kafka_heap: str = "512m"
    cassandra_heap: str = "1g"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path.home()
        data_dir = Path(_env("SDLCFLOW_DATA_DIR", str(home / ".local" / "state" / "sdlcflow")))
        cache_dir = Path(_env("SDLCFLOW_CACHE_DIR", str(home / ".cache" / "sdlcflow")))
        hosts = _env("SDLCFLOW_CASSANDRA_HOSTS", "127.0.0.1")
        return cls(
            # SDLCFLOW_KAFKA_PORT moves the local broker; SDLCFLOW_KAFKA_BOOTSTRAP names a
            # broker that runs already (and then `up` starts none)
            kafka_bootstrap=_env(
                "SDLCFLOW_KAFKA_BOOTSTRAP", f"127.0.0.1:{_env('SDLCFLOW_KAFKA_PORT', '9092')}"
            ),
            cassandra_hosts=tuple(h.strip() for h in hosts.split(",") if h.strip()),
            cassandra_port=int(_env("SDLCFLOW_CASSANDRA_PORT", "9042")),
            keyspace=_env("SDLCFLOW_KEYSPACE", "sdlcflow"),
            schema_registry_url=os.environ.get("SDLCFLOW_SCHEMA_REGISTRY_URL") or None,
            partitions=int(_env("SDLCFLOW_PARTITIONS", "12")),
            data_dir=data_dir,
            cache_dir=cache_dir,
            kafka_given="SDLCFLOW_KAFKA_BOOTSTRAP" in os.environ,
            cassandra_given="SDLCFLOW_CASSANDRA_HOSTS" in os.environ,
            cassandra_storage_port=int(_env("SDLCFLOW_CASSANDRA_STORAGE_PORT", "7000")),
            cassandra_replication_factor=int(_env("SDLCFLOW_CASSANDRA_REPLICATION_FACTOR", "1")),
            kafka_heap=_env("SDLCFLOW_KAFKA_HEAP", "512m"),
            cassandra_heap=_env("SDLCFLOW_CASSANDRA_HEAP", "1g"),
        )
