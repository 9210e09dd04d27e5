"""A private Kafka + Cassandra pair for one chaos run, on free ports and in its own directory.

Chaos stops and restarts the servers, so it never uses the shared ones (other people's tests
run there): `PrivateCluster` finds free ports, starts both servers through the same infra code
as `sdlcflow up` (cached jars, topics, migrations) and gives child processes an environment
that points at them and nowhere else.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from sdlcflow.infra import local
from sdlcflow.infra.local import ServerName
from sdlcflow.settings import Settings

# Small heaps: the private pair runs beside the shared one on a small machine.
KAFKA_HEAP = "384m"
CASSANDRA_HEAP = "768m"
PARTITIONS = 4
KAFKA_STOP_TIMEOUT_S = 10.0
# below Linux's ephemeral range (32768+): while a server is down, a client socket could
# otherwise be given its port and the restart would fail with "address already in use"
_PORT_RANGE = (20_000, 32_000)


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_block(size: int, seed: int) -> int:
    """The first port of `size` consecutive free ports, searched from a seed-derived start."""
    low, high = _PORT_RANGE
    start = low + (seed * 7919) % (high - low - size)
    for offset in range(0, high - low, size):
        first = low + (start - low + offset) % (high - low - size)
        if all(_free(first + n) for n in range(size)):
            return first
    raise OSError(f"no {size} consecutive free ports between {low} and {high}")


@dataclass(frozen=True)
class PrivateCluster:
    """The settings of one run's own servers; `child_env` is what its processes run with."""

    settings: Settings

    @classmethod
    def create(cls, data_dir: Path, seed: int) -> PrivateCluster:
        base = Settings.from_env()
        first = free_port_block(4, seed)
        settings = replace(
            base,
            # broker, controller (+1), CQL, storage
            kafka_bootstrap=f"127.0.0.1:{first}",
            cassandra_hosts=("127.0.0.1",),
            cassandra_port=first + 2,
            cassandra_storage_port=first + 3,
            keyspace="sdlcflow",
            schema_registry_url=None,
            partitions=PARTITIONS,
            data_dir=data_dir,
            kafka_given=False,
            cassandra_given=False,
            cassandra_replication_factor=1,
            kafka_heap=KAFKA_HEAP,
            cassandra_heap=CASSANDRA_HEAP,
        )
        return cls(settings)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    def child_env(self) -> dict[str, str]:
        """The environment of every process of the run: the private servers only (inherited
        SDLCFLOW_* settings that could point elsewhere are dropped)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SDLCFLOW_")}
        s = self.settings
        env.update(
            {
                "SDLCFLOW_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
                "SDLCFLOW_CASSANDRA_HOSTS": ",".join(s.cassandra_hosts),
                "SDLCFLOW_CASSANDRA_PORT": str(s.cassandra_port),
                "SDLCFLOW_KEYSPACE": s.keyspace,
                "SDLCFLOW_PARTITIONS": str(s.partitions),
                "SDLCFLOW_DATA_DIR": str(s.data_dir),
                "SDLCFLOW_CACHE_DIR": str(s.cache_dir),
            }
        )
        return env

    def up(self, timeout_s: float = local.DEFAULT_TIMEOUT_S) -> float:
        """Start both servers, create the topics, migrate; the seconds it took."""
        return local.ensure_up(self.settings, timeout_s=timeout_s).elapsed_s

    def stop(self, name: ServerName) -> None:
        """SIGTERM, then SIGKILL if the server has not stopped in time. Kafka gets 10 s (a
        broker crash is a fault it must survive); Cassandra gets its full minute: its schema now
        survives a SIGKILL, but rows acknowledged within the last commitlog sync period (10 s,
        periodic mode) may not, and a single node has no replica to repair them from."""
        timeout_s = KAFKA_STOP_TIMEOUT_S if name == "kafka" else local.STOP_TIMEOUT_S
        local.stop_server(self.settings, name, timeout_s=timeout_s)

    def start(self, name: ServerName, timeout_s: float = local.DEFAULT_TIMEOUT_S) -> None:
        local.start_server(self.settings, name, timeout_s=timeout_s)

    def down(self) -> None:
        local.stop(self.settings)
