"""Kafka itself keeps agents off the coordinator's topics: TLS, SASL/SCRAM logins and ACLs per
principal on a private broker (own ports and data dir; the shared broker is not touched)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from secure_broker import ClientValue, SecureBroker, secure_broker

from sdlcflow.audit.sink import SINK_GROUP
from sdlcflow.processors.config import DEFAULT_APP_ID, ProcessorConfig, StoreKind
from sdlcflow.settings import Settings
from sdlcflow.streams.topics import (
    AGENT_EVENTS,
    CHANGE_REQUESTS,
    COORDINATOR,
    DEAD_LETTER,
    TICKS,
    task_topic,
)

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 30.0
LINT_TASKS, POLICY_TASKS, DEPLOY_TASKS = (task_topic(c) for c in ("lint", "policy", "deploy"))
TOPICS = (
    CHANGE_REQUESTS, AGENT_EVENTS, COORDINATOR, DEAD_LETTER, TICKS,
    LINT_TASKS, POLICY_TASKS, DEPLOY_TASKS,
)  # fmt: skip
TASKS_PREFIX = "sdlc.tasks."
CATALOG_PREFIX = "sdlc."
# the coordinator's faust tables: their changelog topics are its state (a forged record there is
# a forged coordinator state after the next recovery)
COORDINATOR_CONFIG = ProcessorConfig(
    DEFAULT_APP_ID, "unused:9092", 1, StoreKind.MEMORY, Path("unused"), Path("unused")
)
CHANGELOG_PREFIX = f"{DEFAULT_APP_ID}-"
STATE_CHANGELOG, INDEX_CHANGELOG = (
    COORDINATOR_CONFIG.changelog_topic(table)
    for table in (COORDINATOR_CONFIG.state_table, COORDINATOR_CONFIG.index_table)
)
CHANGELOGS = (STATE_CHANGELOG, INDEX_CHANGELOG)
APPROVALS_GROUP = "sdlcflow-approvals"


@dataclass(frozen=True)
class Grant:
    """What one principal may do (docs/security.md, "ACLs, one principal per role"): topics it
    writes, reads and creates (a name ending in "." or "-" is a prefix) and the consumer-group
    prefix it uses."""

    principal: str
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()
    group_prefix: str = ""
    must_not_write: tuple[str, ...] = field(default=(), compare=False)
    must_not_read: tuple[str, ...] = field(default=(), compare=False)


REVIEWER_CONSOLE = Grant(
    "reviewer-console",
    writes=(AGENT_EVENTS,),
    reads=(COORDINATOR,),
    group_prefix=APPROVALS_GROUP,
    must_not_write=(COORDINATOR, CHANGE_REQUESTS, STATE_CHANGELOG),
    must_not_read=(AGENT_EVENTS, DEPLOY_TASKS, STATE_CHANGELOG),
)
GRANTS = (
    Grant(
        "coordinator",
        writes=(COORDINATOR, TASKS_PREFIX, DEAD_LETTER, TICKS, CHANGELOG_PREFIX),
        reads=(CHANGE_REQUESTS, AGENT_EVENTS, TICKS, CHANGELOG_PREFIX),  # recovery reads changelogs
        creates=(CHANGELOG_PREFIX,),  # faust creates its changelog topics at the first start
        group_prefix=DEFAULT_APP_ID,
        must_not_write=(AGENT_EVENTS, CHANGE_REQUESTS),
        must_not_read=(),
    ),
    Grant(
        "agent-lint",
        writes=(AGENT_EVENTS, DEAD_LETTER),
        reads=(LINT_TASKS,),
        group_prefix="sdlcflow-agent",
        must_not_write=(COORDINATOR, LINT_TASKS, CHANGE_REQUESTS, STATE_CHANGELOG),
        must_not_read=(DEPLOY_TASKS, COORDINATOR, AGENT_EVENTS, STATE_CHANGELOG),
    ),
    Grant(
        "agent-policy",
        writes=(AGENT_EVENTS, DEAD_LETTER),
        reads=(POLICY_TASKS,),
        group_prefix="sdlcflow-agent",
        must_not_write=(COORDINATOR, POLICY_TASKS, INDEX_CHANGELOG),
        must_not_read=(LINT_TASKS, COORDINATOR, INDEX_CHANGELOG),
    ),
    REVIEWER_CONSOLE,
    replace(  # revocations and policy modes: the reviewer-console's grants, nothing more
        REVIEWER_CONSOLE,
        principal="ops",
        must_not_write=(COORDINATOR, LINT_TASKS, DEPLOY_TASKS, CHANGE_REQUESTS, STATE_CHANGELOG),
    ),
    Grant(
        "producer",
        writes=(CHANGE_REQUESTS,),
        must_not_write=(AGENT_EVENTS, COORDINATOR, STATE_CHANGELOG),
        must_not_read=(CHANGE_REQUESTS, COORDINATOR, STATE_CHANGELOG),
    ),
    Grant(
        "audit-sink",
        writes=(DEAD_LETTER,),
        reads=(CATALOG_PREFIX,),
        group_prefix=SINK_GROUP,
        must_not_write=(COORDINATOR, AGENT_EVENTS, CHANGE_REQUESTS, STATE_CHANGELOG),
        must_not_read=(STATE_CHANGELOG,),
    ),
)
BY_NAME = {grant.principal: grant for grant in GRANTS}


def _is_prefix(name: str) -> bool:
    return name.endswith((".", "-"))


def _binding(principal: str, resource: ResourceType, name: str, op: AclOperation) -> AclBinding:
    prefixed = _is_prefix(name) or resource is ResourceType.GROUP
    return AclBinding(
        resource,
        name,
        ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL,
        f"User:{principal}",
        "*",
        op,
        AclPermissionType.ALLOW,
    )


def least_privilege_acls(grant: Grant) -> list[AclBinding]:
    """The ACLs of one principal: WRITE+DESCRIBE on what it writes, READ+DESCRIBE on what it
    reads, CREATE on what it creates, READ on its consumer groups; nothing else (the broker
    denies what no ACL allows)."""
    topic, write, read, describe = (
        ResourceType.TOPIC, AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE,
    )  # fmt: skip
    who = grant.principal
    acls = [_binding(who, topic, name, op) for name in grant.writes for op in (write, describe)]
    acls += [_binding(who, topic, name, op) for name in grant.reads for op in (read, describe)]
    acls += [_binding(who, topic, name, AclOperation.CREATE) for name in grant.creates]
    if grant.group_prefix:
        acls.append(_binding(who, ResourceType.GROUP, grant.group_prefix, read))
    return list(dict.fromkeys(acls))  # a topic both written and read: DESCRIBE once


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[SecureBroker]:
    """One broker for the module (it takes a while to start), every topic holding a record."""
    home = tmp_path_factory.mktemp("secure-kafka")
    with secure_broker(home, tuple(BY_NAME), settings) as running:
        admin = AdminClient(running.client_config("admin"))
        topics = [NewTopic(t, num_partitions=1, replication_factor=1) for t in TOPICS]
        topics += [_changelog_topic(name) for name in CHANGELOGS]
        for future in admin.create_topics(topics).values():
            future.result(timeout=60)
        acls = [acl for grant in GRANTS for acl in least_privilege_acls(grant)]
        for future in admin.create_acls(acls).values():
            future.result(timeout=60)
        for name in (*TOPICS, *CHANGELOGS):
            assert _produce(running.client_config("admin"), name) is None
        yield running


def _changelog_topic(name: str) -> NewTopic:
    """A topic as faust creates a table's changelog: compacted."""
    return NewTopic(
        name, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"}
    )


def _create(config: dict[str, ClientValue], topic: str) -> KafkaError | None:
    """Create a changelog-like topic: None when created, else the broker's error."""
    admin = AdminClient(config)  # kept referenced: a collected client fails its futures
    future = admin.create_topics([_changelog_topic(topic)])[topic]
    try:
        future.result(timeout=60)
    except KafkaException as exc:
        return exc.args[0]  # type: ignore[no-any-return]
    return None


def _produce(config: dict[str, ClientValue], topic: str) -> KafkaError | None:
    """Produce one record and wait for its delivery report: None when written, else the error."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000)})
    producer.produce(
        topic, b"value", key=b"acme/web", on_delivery=lambda err, _m: outcome.append(err)
    )
    producer.flush(DELIVERY_TIMEOUT_S + 5)
    assert outcome, f"no delivery report for {topic} within {DELIVERY_TIMEOUT_S} s"
    return outcome[0]


def _consume(config: dict[str, ClientValue], topic: str, group: str) -> KafkaError | None:
    """Read the topic's first record in `group` (subscribing: the group ACL is checked too):
    None when a record arrived, else the first error the broker returned."""
    consumer = Consumer(
        {**config, "group.id": group, "enable.auto.commit": False, "log_level": 0}
        | {"auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return None
            if error.code() != KafkaError._PARTITION_EOF:
                return error  # type: ignore[no-any-return]
        raise AssertionError(f"neither a record nor an error from {topic} in {READ_TIMEOUT_S} s")
    finally:
        consumer.close()


def _read_refused(error: KafkaError | None) -> bool:
    return error is not None and error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    )


def _cases(kind: str) -> list[tuple[str, str]]:
    return [
        (grant.principal, topic)
        for grant in GRANTS
        for topic in getattr(grant, kind)
        if not _is_prefix(topic)
    ]


def _allowed_reads() -> list[tuple[str, str]]:
    """Each principal's reads; a prefix grant is exercised on two topics under it."""
    cases = _cases("reads")
    cases += [("audit-sink", COORDINATOR), ("audit-sink", DEPLOY_TASKS)]
    return cases + [("coordinator", changelog) for changelog in CHANGELOGS]


def _allowed_writes() -> list[tuple[str, str]]:
    cases = [*_cases("writes"), ("coordinator", LINT_TASKS), ("coordinator", DEPLOY_TASKS)]
    return cases + [("coordinator", changelog) for changelog in CHANGELOGS]


def _new_changelog_name() -> str:
    return f"{CHANGELOG_PREFIX}acl-test-{uuid.uuid4().hex[:8]}-changelog"


def _group(principal: str) -> str:
    prefix = BY_NAME[principal].group_prefix or "no-group-granted"
    return f"{prefix}-acl-test-{uuid.uuid4().hex[:8]}"


class TestAclsPerPrincipal:
    """Each principal of the deployment can do what its role needs and nothing else: above
    all, no agent, reviewer or producer can write the decision log or forge an offer."""

    @pytest.mark.parametrize(("principal", "topic"), _allowed_writes())
    def test_principal_writes_what_its_role_writes(
        self, broker: SecureBroker, principal: str, topic: str
    ) -> None:
        assert _produce(broker.client_config(principal), topic) is None

    @pytest.mark.parametrize(("principal", "topic"), _cases("must_not_write"))
    def test_principal_cannot_write_outside_its_role(
        self, broker: SecureBroker, principal: str, topic: str
    ) -> None:
        error = _produce(broker.client_config(principal), topic)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    @pytest.mark.parametrize(("principal", "topic"), _allowed_reads())
    def test_principal_reads_what_its_role_reads_in_its_group(
        self, broker: SecureBroker, principal: str, topic: str
    ) -> None:
        assert _consume(broker.client_config(principal), topic, _group(principal)) is None

    @pytest.mark.parametrize(("principal", "topic"), _cases("must_not_read"))
    def test_principal_cannot_read_outside_its_role(
        self, broker: SecureBroker, principal: str, topic: str
    ) -> None:
        assert _read_refused(_consume(broker.client_config(principal), topic, _group(principal)))

    def test_agent_cannot_consume_in_another_roles_group(self, broker: SecureBroker) -> None:
        error = _consume(broker.client_config("agent-lint"), LINT_TASKS, f"{SINK_GROUP}-steal")
        assert error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED

    def test_coordinator_creates_topics_under_its_changelog_prefix(
        self, broker: SecureBroker
    ) -> None:
        assert _create(broker.client_config("coordinator"), _new_changelog_name()) is None

    @pytest.mark.parametrize("principal", [g.principal for g in GRANTS if not g.creates])
    def test_principal_cannot_create_topics_under_the_changelog_prefix(
        self, broker: SecureBroker, principal: str
    ) -> None:
        error = _create(broker.client_config(principal), _new_changelog_name())
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


class TestListenerSecurity:
    """No login without the right password, no connection without TLS to the trusted CA."""

    def test_wrong_password_is_refused(self, broker: SecureBroker) -> None:
        config = broker.client_config("agent-lint") | {"sasl.password": "not-the-password"}
        admin = AdminClient(config | {"log_level": 0})
        with pytest.raises(KafkaException) as info:
            admin.list_topics(timeout=10)
        assert info.value.args[0].code() in (
            KafkaError._AUTHENTICATION,
            KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError._TRANSPORT,
            KafkaError._TIMED_OUT,
        )

    def test_plaintext_client_gets_no_metadata(self, broker: SecureBroker) -> None:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)

    def test_client_that_does_not_trust_the_ca_cannot_connect(
        self, broker: SecureBroker, tmp_path: Path
    ) -> None:
        from secure_broker import make_certificates

        other_ca, _ = make_certificates(tmp_path)
        admin = AdminClient(
            broker.client_config("agent-lint", log_level=0) | {"ssl.ca.location": str(other_ca)}
        )
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
