"""The local Cassandra 5.0 node from Maven jars, and CQL sessions to any Cassandra.

The JVM flags are those of upstream `conf/jvm17-server.options` (module exports/opens the
server needs on Java 17, without which it dies at start-up) plus the jamm agent, and the
test-friendly start-up shortcuts: no gossip settling, a short ring delay, no superuser setup
delay, unsafe (non-fsynced) system keyspace writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cassandra import ProtocolVersion
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)

from sdlcflow.infra.jars import JarSet
from sdlcflow.infra.process import home_marker
from sdlcflow.infra.templates import render
from sdlcflow.settings import Settings

MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"

_JAVA17_MODULE_FLAGS = [
    "-Djdk.attach.allowAttachSelf=true",
    *(
        f"--add-exports={spec}=ALL-UNNAMED"
        for spec in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={spec}=ALL-UNNAMED"
        for spec in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
        )
    ),
    "-Dio.netty.tryReflectionSetAccessible=true",
]

_FAST_START_FLAGS = [
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=100",
    "-Dcassandra.superuser_setup_delay_ms=0",
]


def ports(settings: Settings) -> list[tuple[int, str]]:
    """The ports the local node binds, with what each is for."""
    return [
        (settings.cassandra_port, "Cassandra CQL"),
        (settings.cassandra_storage_port, "Cassandra storage"),
    ]


def host(settings: Settings) -> str:
    return settings.cassandra_hosts[0] if settings.cassandra_hosts else "127.0.0.1"


def write_config(settings: Settings, home: Path) -> Path:
    """Write cassandra.yaml and the logback config into the server directory."""
    (home / "triggers").mkdir(parents=True, exist_ok=True)
    config = home / "cassandra.yaml"
    config.write_text(
        render(
            "cassandra.yaml",
            host=host(settings),
            storage_port=settings.cassandra_storage_port,
            native_port=settings.cassandra_port,
            data_dir=home,
        )
    )
    (home / "logback.xml").write_text(render("cassandra-logback.xml"))
    return config


def command(settings: Settings, java: Path, jars: JarSet, home: Path) -> list[str]:
    """The java command line of the node."""
    heap = settings.cassandra_heap
    return [
        str(java),
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-Xss256k",
        "-XX:+UseG1GC",
        "-XX:+ParallelRefProcEnabled",
        "-XX:MaxGCPauseMillis=300",
        # a node that ran out of heap may corrupt data if it goes on: die, and say so in the log
        "-XX:+ExitOnOutOfMemoryError",
        *_JAVA17_MODULE_FLAGS,
        f"-javaagent:{jars.find('jamm-')}",
        "-Djava.net.preferIPv4Stack=true",
        f"-Dcassandra.config=file://{home / 'cassandra.yaml'}",
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.logdir={home / 'logs'}",
        f"-Dcassandra.storagedir={home}",
        f"-Dcassandra.triggers_dir={home / 'triggers'}",
        f"-Dlogback.configurationFile={home / 'logback.xml'}",
        *_FAST_START_FLAGS,
        home_marker(home),
        "-cp",
        jars.classpath,
        MAIN_CLASS,
    ]


def cluster_for(settings: Settings, *, connect_timeout_s: float = 5.0) -> Cluster:
    """A driver Cluster for the configured hosts (not yet connected)."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        request_timeout=30.0,
    )
    return Cluster(
        contact_points=list(settings.cassandra_hosts),
        port=settings.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=connect_timeout_s,
        control_connection_timeout=connect_timeout_s,
        # v5 is spoken by Cassandra 4.0 and later; naming it avoids the driver's trial of
        # newer beta versions and its downgrade warnings
        protocol_version=ProtocolVersion.V5,
        # a node that comes back (restart, outage) is found within seconds, not the driver's
        # default of up to 10 minutes between attempts
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
    )


@contextmanager
def quiet_driver() -> Iterator[None]:
    """Silence the driver's connection-refused warnings while we poll a starting node."""
    logger = logging.getLogger("cassandra")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def cql_answers(settings: Settings, timeout_s: float) -> bool:
    """Whether a CQL session can be opened (the node is really ready)."""
    with quiet_driver():
        cluster = cluster_for(settings, connect_timeout_s=timeout_s)
        try:
            session: Session = cluster.connect()
            session.execute("SELECT release_version FROM system.local", timeout=timeout_s)
            return True
        except Exception:  # NoHostAvailable, OperationTimedOut...: any failure is "not yet"
            return False
        finally:
            cluster.shutdown()
