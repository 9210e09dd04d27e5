"""Bring the servers sdlcflow needs to a usable state, and report or stop them.

`ensure_up` is what `sdlcflow up`, the test fixtures and the demo call: it starts the local
Kafka and Cassandra that are not given by address and not yet running, waits until they
really answer, creates the catalog's topics and applies the schema migrations. Every wait has
a deadline; a server that dies while starting is reported with the tail of its log.
`start_server` / `stop_server` act on one server, for chaos tests that bounce the broker or
the database. One lock file in the data dir serialises all of this across processes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cassandra.cluster import Session
from confluent_kafka.admin import AdminClient

from sdlcflow.infra import cassandra_node, kafka_node
from sdlcflow.infra.errors import InfraError, NotReady, PortTaken, ServerDied
from sdlcflow.infra.jars import SERVERS, JarSet, ServerName, ensure_jars, jar_set_for, jars_present
from sdlcflow.infra.locks import file_lock
from sdlcflow.infra.migrations import MigrationReport, apply_migrations, migration_state
from sdlcflow.infra.process import (
    is_our_server,
    launch,
    log_tail,
    port_open,
    port_owner,
    read_pid,
    terminate,
)
from sdlcflow.infra.toolchain import find_java17
from sdlcflow.infra.topics import TopicReport, ensure_topics, topic_report
from sdlcflow.settings import Settings
from sdlcflow.streams.topics import catalog

__all__ = [
    "SERVERS",
    "ServerName",
    "ServerStatus",
    "ServersInfo",
    "StatusReport",
    "ensure_up",
    "server_status",
    "start_server",
    "stop",
    "stop_server",
]

DEFAULT_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
_POLL_S = 0.25
_PROBE_TIMEOUT_S = 3.0
# a start may first wait for another process that is downloading the jars
_LOCK_TIMEOUT_S = 1500.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default progress sink: say nothing."""


@dataclass(frozen=True)
class ServerStatus:
    """One server as seen now: where it is, whether sdlcflow runs it, whether it answers."""

    name: ServerName
    address: str
    managed: bool
    pid: int | None
    running: bool
    ready: bool
    log_path: Path | None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "managed": self.managed,
            "pid": self.pid,
            "running": self.running,
            "ready": self.ready,
            "log": str(self.log_path) if self.log_path else None,
        }


@dataclass(frozen=True)
class ServersInfo:
    """What `ensure_up` achieved: both servers ready, topics and schema in place."""

    kafka: ServerStatus
    cassandra: ServerStatus
    started: tuple[ServerName, ...]
    topics: TopicReport
    migrations: MigrationReport
    elapsed_s: float

    def to_json(self) -> dict[str, object]:
        return {
            "servers": {"kafka": self.kafka.to_json(), "cassandra": self.cassandra.to_json()},
            "started": list(self.started),
            "topics": self.topics.to_json(),
            "migrations": self.migrations.to_json(),
            "elapsed_s": round(self.elapsed_s, 2),
        }


@dataclass(frozen=True)
class StatusReport:
    """Both servers, and (for those that answer) the topics and the schema version."""

    kafka: ServerStatus
    cassandra: ServerStatus
    keyspace: str
    topics: TopicReport | None
    migrations: MigrationReport | None

    @property
    def healthy(self) -> bool:
        """Both servers answer, no topic is missing and no migration is pending."""
        return (
            self.kafka.ready
            and self.cassandra.ready
            and self.topics is not None
            and not self.topics.missing
            and self.migrations is not None
            and not self.migrations.pending
        )

    def to_json(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "servers": {"kafka": self.kafka.to_json(), "cassandra": self.cassandra.to_json()},
            "topics": self.topics.to_json() if self.topics else None,
            "keyspace": {
                "name": self.keyspace,
                "exists": self.migrations is not None and self.migrations.version is not None,
                "migration_version": self.migrations.version if self.migrations else None,
                "latest_migration": self.migrations.latest if self.migrations else None,
                "pending": list(self.migrations.pending) if self.migrations else None,
                "drifted": list(self.migrations.drifted) if self.migrations else None,
            },
        }


@dataclass(frozen=True)
class _Server:
    """One of the two servers under one Settings: its directory, files, ports and probe."""

    name: ServerName
    settings: Settings

    @property
    def home(self) -> Path:
        return self.settings.data_dir / self.name

    @property
    def pid_path(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def given(self) -> bool:
        s = self.settings
        return s.kafka_given if self.name == "kafka" else s.cassandra_given

    @property
    def address(self) -> str:
        s = self.settings
        if self.name == "kafka":
            return s.kafka_bootstrap
        return ",".join(f"{h}:{s.cassandra_port}" for h in s.cassandra_hosts)

    def ports(self) -> list[tuple[int, str]]:
        return (
            kafka_node.ports(self.settings)
            if self.name == "kafka"
            else cassandra_node.ports(self.settings)
        )

    def pid(self) -> int | None:
        return read_pid(self.pid_path)

    def running(self) -> bool:
        return not self.given and is_our_server(self.pid(), self.home)

    def answers(self, timeout_s: float) -> bool:
        """Whether the server answers a real request (metadata / a CQL session)."""
        if self.name == "kafka":
            if not self.given and not port_open(*kafka_node.address(self.settings)):
                return False
            return kafka_node.metadata_answers(self.settings.kafka_bootstrap, timeout_s)
        if not self.given and not port_open(
            cassandra_node.host(self.settings), self.settings.cassandra_port
        ):
            return False
        return cassandra_node.cql_answers(self.settings, timeout_s)

    def status(self, *, probe_timeout_s: float = _PROBE_TIMEOUT_S) -> ServerStatus:
        running = self.running()
        return ServerStatus(
            name=self.name,
            address=self.address,
            managed=not self.given,
            pid=self.pid() if running else None,
            running=running,
            ready=(running or self.given) and self.answers(probe_timeout_s),
            log_path=None if self.given else self.log_path,
        )


def _lock(settings: Settings, what: str) -> contextlib.AbstractContextManager[None]:
    return file_lock(settings.data_dir / ".servers.lock", timeout_s=_LOCK_TIMEOUT_S, what=what)


_ADDRESS_VARIABLE = {"kafka": "SDLCFLOW_KAFKA_BOOTSTRAP", "cassandra": "SDLCFLOW_CASSANDRA_HOSTS"}


def _check_ports_free(server: _Server) -> None:
    s = server.settings
    host = kafka_node.address(s)[0] if server.name == "kafka" else cassandra_node.host(s)
    for port, purpose in server.ports():
        if port_open(host, port):
            raise PortTaken(
                f"{host}:{port} ({purpose} port) is taken by {port_owner(port)}, which is not the "
                f"{server.name} that sdlcflow started from {server.home}. Stop that process, "
                f"or, if it is a {server.name} you want to use, point "
                f"{_ADDRESS_VARIABLE[server.name]} at it so sdlcflow uses it instead of "
                "starting its own"
            )


def _launch(server: _Server, java_home: Path, jars: JarSet, progress: Progress) -> int:
    """Write the config (and format Kafka's storage once), start the process; its pid."""
    java = java_home / "bin" / "java"
    if server.name == "kafka":
        kafka_node.write_config(server.settings, server.home)
        kafka_node.format_storage(java, jars, server.home)
        command = kafka_node.command(server.settings, java, jars, server.home)
    else:
        cassandra_node.write_config(server.settings, server.home)
        command = cassandra_node.command(server.settings, java, jars, server.home)
    progress(f"starting {server.name}")
    env = {**os.environ, "JAVA_HOME": str(java_home)}
    pid = launch(command, env=env, cwd=server.home, log_path=server.log_path)
    server.pid_path.write_text(f"{pid}\n")
    return pid


def _died(server: _Server) -> ServerDied:
    server.pid_path.unlink(missing_ok=True)
    return ServerDied(
        f"{server.name} exited while starting. The last lines of its log:\n"
        f"{log_tail(server.log_path)}\n"
        f"Full log: {server.log_path}"
    )


def _wait_ready(servers: list[_Server], deadline: float, progress: Progress) -> None:
    """Poll until every server answers; fail fast if a managed one dies, never past deadline."""
    pending = list(servers)
    for server in pending:
        progress(f"waiting for {server.name} at {server.address}")
    while pending:
        for server in list(pending):
            if not server.given and not server.running():
                raise _died(server)
            if server.answers(min(_PROBE_TIMEOUT_S, max(0.5, deadline - time.monotonic()))):
                pending.remove(server)
                progress(f"{server.name} is ready")
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise NotReady(_not_ready_message(pending))
        time.sleep(_POLL_S)


def _not_ready_message(pending: list[_Server]) -> str:
    parts = []
    for server in pending:
        if server.given:
            parts.append(
                f"{server.name} at {server.address} (given by environment) did not answer; "
                "check the address and that the server runs"
            )
        else:
            parts.append(
                f"{server.name} (pid {server.pid()}) is still running but did not answer at "
                f"{server.address}; the last lines of its log:\n{log_tail(server.log_path)}\n"
                f"Full log: {server.log_path}. Raise --timeout on a slow machine, or run "
                "`sdlcflow down` and `sdlcflow up` again"
            )
    return "\n".join(parts)


def _bring_up(
    servers: list[_Server], timeout_s: float, progress: Progress
) -> tuple[ServerName, ...]:
    """Start the servers that need it (all launched before waiting on any); the started ones.

    Ports are checked first (cheap, and the commonest mistake), then the jars are fetched;
    the readiness deadline starts only after that, so a first download is not a timeout.
    """
    to_start = [s for s in servers if not s.given and not s.running()]
    for server in servers:
        if server not in to_start and not server.given:
            progress(f"{server.name} already running (pid {server.pid()})")
    for server in to_start:
        server.pid_path.unlink(missing_ok=True)  # stale: its process is gone
        _check_ports_free(server)
    if to_start:
        java_home = find_java17()
        jars = {s.name: _jars(s, java_home, progress) for s in to_start}
        for server in to_start:
            _launch(server, java_home, jars[server.name], progress)
    _wait_ready(servers, time.monotonic() + timeout_s, progress)
    return tuple(s.name for s in to_start)


def _jars(server: _Server, java_home: Path, progress: Progress) -> JarSet:
    if not jars_present(jar_set_for(server.name, server.settings.cache_dir)):
        progress(f"fetching {server.name} jars from Maven Central (once)")
    return ensure_jars(server.name, server.settings.cache_dir, java_home)


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})


@contextlib.contextmanager
def cql_session(settings: Settings, keyspace: str | None = None) -> Iterator[Session]:
    """A CQL session to the configured Cassandra, closed on exit."""
    cluster = cassandra_node.cluster_for(settings)
    try:
        yield cluster.connect(keyspace)
    finally:
        cluster.shutdown()


def ensure_up(
    settings: Settings,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: Progress = _quiet,
) -> ServersInfo:
    """Both servers ready, every catalog topic present and the schema migrated (idempotent)."""
    started_at = time.monotonic()
    with _lock(settings, "starting the servers"):
        servers = [_Server(name, settings) for name in SERVERS]
        started = _bring_up(servers, timeout_s, progress)
        progress("creating topics")
        topics = ensure_topics(_admin(settings), catalog(settings.partitions), timeout_s=timeout_s)
        progress("applying migrations")
        with cql_session(settings) as session:
            migrations = apply_migrations(session, settings)
        kafka_status, cassandra_status = (s.status() for s in servers)
    return ServersInfo(
        kafka=kafka_status,
        cassandra=cassandra_status,
        started=started,
        topics=topics,
        migrations=migrations,
        elapsed_s=time.monotonic() - started_at,
    )


def migrate(settings: Settings, *, timeout_s: float = 30.0) -> MigrationReport:
    """Apply pending migrations to a Cassandra that runs (started by `up`, or given)."""
    server = _Server("cassandra", settings)
    if not server.given and not server.running():
        raise NotReady(
            f"Cassandra is not running at {server.address}; run `sdlcflow up` first "
            "(or set SDLCFLOW_CASSANDRA_HOSTS to a running cluster)"
        )
    _wait_ready([server], time.monotonic() + timeout_s, _quiet)
    with _lock(settings, "migrating"), cql_session(settings) as session:
        return apply_migrations(session, settings)


def start_server(
    settings: Settings,
    name: ServerName,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: Progress = _quiet,
) -> ServerStatus:
    """Start one server if it is not running, and wait until it answers (chaos tests use it)."""
    server = _Server(name, settings)
    with _lock(settings, f"starting {name}"):
        _bring_up([server], timeout_s, progress)
        return server.status()


def stop_server(
    settings: Settings, name: ServerName, *, timeout_s: float = STOP_TIMEOUT_S, kill: bool = False
) -> bool:
    """Stop one local server (SIGTERM, SIGKILL after `timeout_s`, or SIGKILL at once with
    `kill`, to simulate a crash); False when it was not running. Given servers are refused."""
    server = _Server(name, settings)
    if server.given:
        raise InfraError(
            f"{name} at {server.address} was given by environment; sdlcflow does not stop "
            "servers it did not start"
        )
    with _lock(settings, f"stopping {name}"):
        return _stop(server, timeout_s=timeout_s, kill=kill)


def _stop(server: _Server, *, timeout_s: float, kill: bool) -> bool:
    pid = server.pid()
    was_running = server.running()
    if was_running and pid is not None:
        terminate(pid, timeout_s=timeout_s, kill=kill)
    server.pid_path.unlink(missing_ok=True)
    return was_running


def stop(settings: Settings, *, timeout_s: float = STOP_TIMEOUT_S) -> tuple[ServerName, ...]:
    """Stop both local servers (idempotent); the names of those that were running."""
    stopped: list[ServerName] = []
    with _lock(settings, "stopping the servers"):
        for name in SERVERS:
            server = _Server(name, settings)
            if not server.given and _stop(server, timeout_s=timeout_s, kill=False):
                stopped.append(name)
    return tuple(stopped)


def server_status(settings: Settings, *, probe_timeout_s: float = _PROBE_TIMEOUT_S) -> StatusReport:
    """Each server, and the topics and schema of those that answer; changes nothing."""
    kafka_status = _Server("kafka", settings).status(probe_timeout_s=probe_timeout_s)
    cassandra_status = _Server("cassandra", settings).status(probe_timeout_s=probe_timeout_s)
    topics = (
        topic_report(_admin(settings), catalog(settings.partitions), probe_timeout_s)
        if kafka_status.ready
        else None
    )
    migrations = None
    if cassandra_status.ready:
        with cql_session(settings) as session:
            migrations = migration_state(session, settings)
    return StatusReport(kafka_status, cassandra_status, settings.keyspace, topics, migrations)


def running_servers(settings: Settings) -> tuple[ServerName, ...]:
    """The local servers whose process is alive (whether or not they answer yet)."""
    return tuple(name for name in SERVERS if _Server(name, settings).running())


def data_home(settings: Settings, name: ServerName) -> Path:
    """The directory of one local server: config, data, pid file and log."""
    return _Server(name, settings).home
