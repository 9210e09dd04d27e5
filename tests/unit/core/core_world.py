"""A small driver for decider tests: builds input events the way the shell would and keeps the
state and the decision log, so tests read as given -> when -> then."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sdlcflow.core import events as ev
from sdlcflow.core.decider import CoreConfig, handle
from sdlcflow.core.events import Actor, ActorKind, ActorScope, Envelope, Event, Payload
from sdlcflow.core.fold import evolve
from sdlcflow.core.planner import load_templates, packaged_template_texts
from sdlcflow.core.state import RepoState, TaskState

REPO = "acme/shop"
TEMPLATES = load_templates(packaged_template_texts())
CONFIG = CoreConfig(templates=TEMPLATES, lease_ttl_ms=30_000)
FAR_FUTURE = 10**13
NOTHING_TOUCHED = ev.Outputs()

PRODUCER = Actor(ActorKind.PRODUCER, "webhook")
CLOCK = Actor(ActorKind.COORDINATOR, "timer")


def agent_scope(
    actor_id: str,
    capabilities: Sequence[str],
    *,
    kind: ev.ActorKind = ActorKind.AGENT,
    paths: Sequence[str] = ("*",),
    environments: Sequence[str] = ("staging", "prod"),
    repos: Sequence[str] = (REPO,),
    expires_at: int = FAR_FUTURE,
) -> ActorScope:
    return ActorScope(
        actor_id=actor_id,
        kind=kind,
        capabilities=tuple(capabilities),
        repos=tuple(repos),
        paths=tuple(paths),
        environments=tuple(environments),
        expires_at=expires_at,
    )


ALL_CAPS = (
    "lint",
    "test",
    "policy",
    "merge",
    "promote",
    "deploy",
    "security-scan",
    "dependency-update",
)


@dataclass
class World:
    """Holds one repository's state and every decision made, advancing a fake clock."""

    config: CoreConfig = CONFIG
    state: RepoState = field(default_factory=RepoState)
    log: list[Event] = field(default_factory=list)
    inputs: list[Event] = field(default_factory=list)
    now: int = 1_700_000_000_000
    seq: int = 0

    # -- plumbing -----------------------------------------------------------------------------

    def event(
        self,
        payload: Payload,
        actor: Actor,
        *,
        change_id: str | None = None,
        task_id: str | None = None,
        scope: ActorScope | None = None,
        event_id: str | None = None,
    ) -> Event:
        self.seq += 1
        envelope = Envelope(
            event_id=event_id or f"in-{self.seq:06d}",
            type=type(payload).__name__,
            occurred_at=self.now,
            repo=REPO,
            change_id=change_id,
            task_id=task_id,
            trace_id="trace-1",
            causation_id=None,
            actor=actor,
        )
        return Event(envelope, payload, scope)

    def feed(self, event: Event) -> tuple[Event, ...]:
        self.inputs.append(event)
        self.state, out = handle(self.state, event, self.config)
        self.log.extend(out)
        return out

    def send(self, payload: Payload, actor: Actor, **kwargs: object) -> tuple[Event, ...]:
        return self.feed(self.event(payload, actor, **kwargs))  # type: ignore[arg-type]

    def advance(self, ms: int) -> tuple[Event, ...]:
        self.now += ms
        return self.send(ev.Tick(), CLOCK)

    def replayed(self) -> RepoState:
        state = RepoState()
        for event in self.log:
            state = evolve(state, event)
        return state

    # -- producers ----------------------------------------------------------------------------

    def request(
        self,
        change_id: str,
        *,
        template: str = "code-change",
        head: str = "h1",
        base: str = "b0",
        lockfile: str = "l1",
        paths: Sequence[str] = ("src/app.py",),
        resources: Sequence[str] = (),
        environments: Sequence[str] = ("prod",),
        labels: Sequence[str] = (),
        kind: str = "code",
    ) -> tuple[Event, ...]:
        payload = ev.ChangeRequested(
            kind=kind,
            template=template,
            base_sha=base,
            head_sha=head,
            lockfile_digest=lockfile,
            title=change_id,
            paths=tuple(paths),
            labels=tuple(labels),
            resources=tuple(resources),
            environments=tuple(environments),
        )
        return self.send(payload, PRODUCER, change_id=change_id)

    # -- agents -------------------------------------------------------------------------------

    def task(self, change_id: str, step: str) -> TaskState:
        return self.state.changes[change_id].tasks[f"{change_id}/{step}"]

    def lease(
        self, change_id: str, step: str, agent: str = "agent-1", scope: ActorScope | None = None
    ) -> tuple[Event, ...]:
        task = self.task(change_id, step)
        capability = task.contract.capability
        return self.send(
            ev.LeaseRequested(capability),
            Actor(ActorKind.AGENT, agent),
            change_id=change_id,
            task_id=task.contract.id,
            scope=scope or agent_scope(agent, ALL_CAPS),
        )

    def succeed(
        self,
        change_id: str,
        step: str,
        agent: str = "agent-1",
        *,
        verified: ev.VerifiedState | None = None,
        policy: ev.PolicyOutcome | None = None,
        touched: ev.Outputs = NOTHING_TOUCHED,
        epoch: int | None = None,
        lease_id: str | None = None,
        inputs: tuple[ev.ArtifactRef, ...] | None = None,
        scope: ActorScope | None = None,
    ) -> tuple[Event, ...]:
        task = self.task(change_id, step)
        lease = task.lease
        payload = ev.TaskSucceeded(
            lease_id=lease_id or (lease.lease_id if lease else "none"),
            epoch=epoch if epoch is not None else (lease.epoch if lease else 0),
            inputs=inputs if inputs is not None else task.contract.inputs,
            touched=touched,
            verified=verified,
            policy=policy,
        )
        return self.send(
            payload,
            Actor(ActorKind.AGENT, agent),
            change_id=change_id,
            task_id=task.contract.id,
            scope=scope or agent_scope(agent, ALL_CAPS),
        )

    def fail(
        self, change_id: str, step: str, agent: str = "agent-1", *, retryable: bool = True
    ) -> tuple[Event, ...]:
        task = self.task(change_id, step)
        lease = task.lease
        assert lease is not None
        return self.send(
            ev.TaskFailed(lease.lease_id, lease.epoch, "boom", retryable),
            Actor(ActorKind.AGENT, agent),
            change_id=change_id,
            task_id=task.contract.id,
            scope=agent_scope(agent, ALL_CAPS),
        )

    def run_step(
        self,
        change_id: str,
        step: str,
        agent: str = "agent-1",
        **kwargs: object,
    ) -> tuple[Event, ...]:
        granted = self.lease(change_id, step, agent)
        assert any(e.type == "LeaseGranted" for e in granted), [
            (e.type, e.payload) for e in granted
        ]
        return self.succeed(change_id, step, agent, **kwargs)  # type: ignore[arg-type]

    def policy(
        self, decision: ev.PolicyDecision, *, enforced: bool = True, revision: str = "pol-7"
    ) -> ev.PolicyOutcome:
        return ev.PolicyOutcome(decision, enforced, revision, f"evidence-{decision.value}")

    def approve(
        self, change_id: str, reviewer: str = "alice", *, state: ev.VerifiedState | None = None
    ) -> tuple[Event, ...]:
        task = self.task(change_id, "approval")
        change = self.state.changes[change_id]
        return self.send(
            ev.ApprovalSigned(state or change.state, task.evidence_digest),
            Actor(ActorKind.HUMAN, reviewer),
            change_id=change_id,
            task_id=task.contract.id,
            scope=agent_scope(reviewer, ("approval",), kind=ActorKind.HUMAN),
        )


def types(events: Sequence[Event]) -> list[str]:
    return [e.type for e in events]


def of_type(events: Sequence[Event], name: str) -> list[Event]:
    return [e for e in events if e.type == name]
