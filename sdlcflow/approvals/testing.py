"""Test helpers shipped with the package: reviewer identities and coordinator decisions.

Used by sdlcflow's own unit, integration and browser tests, and by anyone testing a tool that
reads approvals: they build the same credentials, keys and events production uses.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sdlcflow.core import events as ev
from sdlcflow.core.decider import CoreConfig, handle
from sdlcflow.core.events import (
    Actor,
    ActorKind,
    ActorScope,
    Envelope,
    Event,
    Payload,
    VerifiedState,
)
from sdlcflow.core.planner import load_templates, packaged_template_texts
from sdlcflow.core.state import RepoState
from sdlcflow.identity import (
    CredentialClaims,
    KeyPair,
    generate_key_pair,
    issue_credential,
    save_private_key,
)
from sdlcflow.processors.engine import CoordinatorEngine, Inbound
from sdlcflow.processors.storage import StoredRepo
from sdlcflow.processors.trust import CredentialGate, TrustedIssuers
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR
from sdlcflow.streams.wire import EventCodec

HOUR_MS = 3_600_000
COORDINATOR_ACTOR = Actor(ActorKind.COORDINATOR, "coordinator")


@dataclass(frozen=True)
class ReviewerFiles:
    """A reviewer's private key file and credential file, as ops would hand them out."""

    subject: str
    key_file: Path
    credential_file: Path
    key: KeyPair
    token: str


def issue_reviewer(
    directory: Path,
    subject: str,
    issuer: KeyPair,
    *,
    kind: ActorKind = ActorKind.HUMAN,
    capabilities: Sequence[str] = (ev.REVIEW_CAPABILITY,),
    repos: Sequence[str] = ("*",),
    issued_at: int | None = None,
    ttl_ms: int = 2 * HOUR_MS,
    bind_key: KeyPair | None = None,
) -> ReviewerFiles:
    """A fresh key (0600 file) and a credential signed by `issuer` that binds its public half."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key_pair(f"{subject}-key")
    key_file = directory / f"{subject}.key"
    save_private_key(key, key_file)
    at = issued_at if issued_at is not None else int(time.time() * 1000) - 300_000
    claims = CredentialClaims(
        credential_id=f"cred-{uuid.uuid4().hex[:12]}",
        subject=subject,
        kind=kind,
        capabilities=tuple(capabilities),
        repos=tuple(repos),
        paths=("*",),
        environments=(),
        issued_at=at,
        expires_at=at + ttl_ms,
        issuer_key_id=issuer.key_id,
        actor_key=(bind_key or key).public_key_b64,
    )
    token = issue_credential(claims, issuer)
    credential_file = directory / f"{subject}.credential"
    credential_file.write_text(token + "\n", encoding="ascii")
    return ReviewerFiles(subject, key_file, credential_file, key, token)


def decision(
    payload: Payload,
    *,
    repo: str,
    change_id: str,
    task_id: str | None = None,
    causation_id: str | None = None,
    occurred_at: int = 1_700_000_000_000,
    event_id: str | None = None,
) -> Event:
    """A coordinator decision as it appears on `sdlc.coordinator`."""
    return Event(
        Envelope(
            event_id=event_id or str(uuid.uuid4()),
            type=type(payload).__name__,
            occurred_at=occurred_at,
            repo=repo,
            change_id=change_id,
            task_id=task_id,
            trace_id=uuid.uuid4().hex,
            causation_id=causation_id,
            actor=COORDINATOR_ACTOR,
        ),
        payload,
    )


def approval_requested(
    repo: str,
    change_id: str,
    state: VerifiedState,
    evidence_digest: str,
    *,
    required: int = 1,
    occurred_at: int = 1_700_000_000_000,
) -> Event:
    """The ApprovalRequested the coordinator emits for `<change_id>/approval`."""
    return decision(
        ev.ApprovalRequested(required, state, evidence_digest),
        repo=repo,
        change_id=change_id,
        task_id=f"{change_id}/approval",
        occurred_at=occurred_at,
    )


@dataclass
class CoreDriver:
    """Drives one change through the real pure core up to its approval task.

    The decisions it returns are exactly what the coordinator would publish on
    `sdlc.coordinator`, and `state` is the coordinator's state after them, so a test can hand
    both to a real CoordinatorEngine and let it judge the reviewer's decision.
    """

    repo: str
    state: RepoState = field(default_factory=RepoState)
    log: list[Event] = field(default_factory=list)
    now: int = field(default_factory=lambda: int(time.time() * 1000) - 60_000)
    config: CoreConfig = field(
        default_factory=lambda: CoreConfig(templates=load_templates(packaged_template_texts()))
    )

    def _feed(
        self, payload: Payload, actor: Actor, change_id: str, task_id: str | None
    ) -> list[Event]:
        self.now += 10
        scope = None
        if actor.kind is ActorKind.AGENT:
            scope = ActorScope(actor.id, actor.kind, _AGENT_CAPS, (self.repo,), ("*",), (), 2**62)
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            type=type(payload).__name__,
            occurred_at=self.now,
            repo=self.repo,
            change_id=change_id,
            task_id=task_id,
            trace_id=uuid.uuid4().hex,
            causation_id=None,
            actor=actor,
        )
        self.state, out = handle(self.state, Event(envelope, payload, scope), self.config)
        self.log.extend(out)
        return list(out)

    def _step(self, change_id: str, step: str, **result: object) -> list[Event]:
        task = self.state.changes[change_id].tasks[f"{change_id}/{step}"]
        agent = Actor(ActorKind.AGENT, f"{step}-agent")
        granted = self._feed(
            ev.LeaseRequested(task.contract.capability), agent, change_id, task.contract.id
        )
        lease = next(e.payload for e in granted if isinstance(e.payload, ev.LeaseGranted))
        succeeded = ev.TaskSucceeded(
            lease.lease_id,
            lease.epoch,
            task.contract.inputs,
            ev.Outputs(),
            **result,  # type: ignore[arg-type]
        )
        return self._feed(succeeded, agent, change_id, task.contract.id)

    def to_approval(
        self,
        change_id: str,
        state: VerifiedState,
        evidence_digest: str,
        *,
        submitted_by: str = "webhook",
    ) -> Event:
        """Request, lint, test and a REVIEW policy outcome; returns the ApprovalRequested."""
        request = ev.ChangeRequested(
            "code",
            "code-change",
            state.base_sha,
            state.head_sha,
            state.lockfile_digest,
            title=change_id,
            paths=("requirements.txt",),
            environments=("prod",),
        )
        self._feed(request, Actor(ActorKind.PRODUCER, submitted_by), change_id, None)
        self._step(change_id, "lint")
        tested = VerifiedState(
            state.head_sha, state.base_sha, state.lockfile_digest, state.artifact_digest
        )
        self._step(change_id, "test", verified=tested)
        outcome = ev.PolicyOutcome(
            ev.PolicyDecision.REVIEW, True, state.policy_revision, evidence_digest, ("review",)
        )
        out = self._step(change_id, "policy", policy=outcome)
        return next(e for e in out if isinstance(e.payload, ev.ApprovalRequested))


_AGENT_CAPS = ("lint", "test", "policy", "merge", "promote")


class EngineLoop:
    """The coordinator's own engine (gate + core, as the faust shell runs it) on private topics.

    Reads reviewer decisions for one repository from `inputs_topic` (read as if it were
    `sdlc.agent-events`), decides with a CoordinatorEngine seeded with `state`, and produces
    the decisions bound for `sdlc.coordinator` to `decisions_topic`. Private topics keep
    coordinators that other tests run on the shared broker from answering our events.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        repo: str,
        state: RepoState,
        trusted: Mapping[str, Ed25519PublicKey],
        inputs_topic: str,
        decisions_topic: str,
        core: CoreConfig | None = None,
    ) -> None:
        self.repo = repo
        self.state = state
        self.inputs_topic = inputs_topic
        self.decisions_topic = decisions_topic
        gate = CredentialGate(TrustedIssuers.of(dict(trusted)))
        self.engine = CoordinatorEngine(
            core or CoreConfig(templates=load_templates(packaged_template_texts())),
            gate,
            EventCodec(),
            group="approvals-engine-loop",
        )
        self.decided = 0
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"approvals-engine-loop-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([inputs_topic])
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)

    def __enter__(self) -> EngineLoop:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._consumer.close()

    def _load(self, repo: str, _partition: int) -> StoredRepo | None:
        return StoredRepo(self.state) if repo == self.repo else None

    def _index(self, _partition: int) -> frozenset[str]:
        return frozenset({self.repo})

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self._consumer.consume(50, 0.2)
            batch = [
                Inbound(AGENT_EVENTS, m.partition() or 0, m.offset() or 0, m.key(), m.value())
                for m in messages
                if m.error() is None and m.key() == self.repo.encode()
            ]
            if not batch:
                continue
            result = self.engine.process(batch, self._load, self._index)
            for record in result.outbound:
                if record.topic == COORDINATOR:
                    self._producer.produce(
                        self.decisions_topic, record.value, record.key, headers=list(record.headers)
                    )
            self._producer.flush(30)
            self.engine.commit(result)
            for slot in result.slots.values():
                if slot.repo == self.repo:
                    self.state = slot.state
            self.decided += result.decisions


def create_private_topics(bootstrap: str, *names: str, partitions: int = 3) -> None:
    """Create topics for one test (idempotent), waiting until the broker has them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for future in futures.values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def publish_decisions(bootstrap: str, topic: str, decisions: Sequence[Event]) -> None:
    """Put decisions on `topic` as the coordinator would (keyed by repo, Avro wire format)."""
    publisher = EventPublisher(bootstrap)
    for decision_event in decisions:
        publisher.publish(topic, decision_event)
    publisher.flush()
