"""A private single-node Kafka (KRaft) with TLS, SASL/SCRAM and ACLs, for the security tests.

Same jars and java as `sdlcflow up`, but its own ports and data directory, so the shared broker
on 9092 is never touched. What it sets up is what docs/security.md recommends for production:

- one client listener, SASL_SSL: TLS with a certificate from a throw-away CA (SAN 127.0.0.1),
  SCRAM-SHA-512 logins; the broker talks to itself over it as the super user `admin`;
- the KRaft controller listener on its own port (PLAINTEXT here; in production bind it to a
  private network or use SSL);
- StandardAuthorizer with `allow.everyone.if.no.acl.found=false`: a principal can do only what
  an ACL grants it;
- SCRAM users created when the storage is formatted (`--add-scram`), before the first start.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from sdlcflow.infra.jars import jar_set_for
from sdlcflow.infra.kafka_node import new_cluster_id
from sdlcflow.infra.toolchain import find_java17
from sdlcflow.settings import Settings

MECHANISM = "SCRAM-SHA-512"
ClientValue = str | int | float | bool
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SecureBroker:
    """Where the broker listens, the CA clients must trust and the users' passwords."""

    bootstrap: str
    ca_file: Path
    passwords: Mapping[str, str]
    log_file: Path

    def client_config(self, user: str, **extra: ClientValue) -> dict[str, ClientValue]:
        """librdkafka settings that log in as `user` over TLS, verifying the broker."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.passwords[user],
            "ssl.ca.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            **extra,
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A CA and a broker certificate for 127.0.0.1 signed by it: (ca.pem, broker.pem with the
    unencrypted PKCS#8 key followed by the certificate chain)."""
    openssl = "openssl"
    ca = ["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=sdlcflow-test-ca"]
    _run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *ca], directory)
    csr = ["-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=127.0.0.1"]
    _run([openssl, "req", "-newkey", "rsa:2048", "-nodes", *csr], directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sign = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-extfile", "san.ext"]
    _run([openssl, "x509", "-req", "-in", "broker.csr", "-out", "broker.crt", *sign], directory)
    _run(
        [openssl, "pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.p8"],
        directory,
    )
    keystore = directory / "broker.pem"
    keystore.write_text(
        (directory / "broker.p8").read_text()
        + (directory / "broker.crt").read_text()
        + (directory / "ca.pem").read_text()
    )
    return directory / "ca.pem", keystore


def server_properties(
    port: int, controller_port: int, data: Path, ca: Path, keystore: Path, admin_password: str
) -> str:
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="admin" password="{admin_password}";'
    )
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={ca}",
            "ssl.endpoint.identification.algorithm=https",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # admin: the broker itself; ANONYMOUS: the broker's own PLAINTEXT controller link
            "super.users=User:admin;User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={data}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "num.network.threads=1",
            "num.io.threads=2",
            # the 128 MiB default compaction buffer does not fit a 256 MiB heap beside the rest
            "log.cleaner.dedupe.buffer.size=16777216",
            "",
        ]
    )


@contextmanager
def secure_broker(home: Path, users: tuple[str, ...], settings: Settings) -> Iterator[SecureBroker]:
    """Start the broker in `home` with SCRAM users `admin` + `users`; stop it afterwards."""
    java = find_java17() / "bin" / "java"
    jars = jar_set_for("kafka", settings.cache_dir)
    ca, keystore = make_certificates(home)
    passwords = {user: secrets.token_urlsafe(16) for user in ("admin", *users)}
    port, controller_port = free_port(), free_port()
    config = home / "server.properties"
    config.write_text(
        server_properties(port, controller_port, home / "data", ca, keystore, passwords["admin"])
    )
    base = [str(java), "-Xms128m", "-Xmx384m", "-cp", jars.classpath]
    scram = [
        arg
        for user, password in passwords.items()
        for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")
    ]
    cluster_id = new_cluster_id()
    _run(
        [*base, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *scram],
        home,
    )
    log_file = home / "broker.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [*base, f"-Dkafka.logs.dir={home / 'logs'}", "kafka.Kafka", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    broker = SecureBroker(f"127.0.0.1:{port}", ca, passwords, log_file)
    try:
        _wait_ready(broker, process)
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(broker: SecureBroker, process: subprocess.Popen[bytes]) -> None:
    admin = AdminClient(broker.client_config("admin", log_level=0))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"secure broker exited ({process.returncode}):\n"
                + broker.log_file.read_text(errors="replace")[-3000:]
            )
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except Exception:  # not up yet: librdkafka raises on timeout
            continue
    raise RuntimeError(
        f"secure broker not ready in {READY_TIMEOUT_S} s:\n"
        + broker.log_file.read_text(errors="replace")[-3000:]
    )
