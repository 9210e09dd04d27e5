"""One chaos run, start to finish: private servers, coordinator, audit sink and agents, the
workload, the seeded faults, then the checks from the outside and the report.

Order of the ending matters: once every change is closed the agents stop, the replay is
verified against the live coordinator, the coordinator stops (no more ticks), the audit sink
catches up with everything on the topics, and only then are the topics and the store read.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlcflow.bench.machine import describe_machine
from sdlcflow.chaos import invariants
from sdlcflow.chaos.agents import CAPABILITIES
from sdlcflow.chaos.cluster import PrivateCluster
from sdlcflow.chaos.faults import FaultKind, PlannedFault, Profile, schedule
from sdlcflow.chaos.follow import DecisionFollower, now_ms
from sdlcflow.chaos.invariants import Violation
from sdlcflow.chaos.processes import Child, Children
from sdlcflow.chaos.reader import TopicEvidence, change_rows, read_topics, stored_event_ids
from sdlcflow.chaos.workload import Workload
from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.errors import SdlcflowError
from sdlcflow.identity import save_private_key
from sdlcflow.infra.local import cql_session
from sdlcflow.processors.testing import TestIssuer

Progress = Callable[[str], None]

TICK_MS = 200
AUDIT_WAIT_S = 180.0
REPLAY_TIMEOUT_S = 180.0
_AGENT_TTL_MS = 12 * 3600 * 1000
_SUPERVISE_S = 0.5
BUSY_WAIT_S = 10.0
# a restarted Cassandra took over 3 minutes to answer on the loaded 2-core box
RESTART_TIMEOUT_S = 600.0


class ChaosError(SdlcflowError):
    """The chaos run could not be carried out (not: an invariant was violated)."""


@dataclass
class FaultRecord:
    """A fault as it happened: when it was injected and healed, what it hit, the recovery."""

    planned: PlannedFault
    injected_ms: int
    healed_ms: int
    detail: str
    recovery_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.planned.to_json(),
            "detail": self.detail,
            "took_s": (
                round((self.healed_ms - self.injected_ms) / 1000, 2) if self.healed_ms else None
            ),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
        }


@dataclass
class ChaosReport:
    """The figures of one run; `violations` must be empty."""

    profile: Profile
    seed: int
    run_id: str
    changes: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    fencing: dict[str, int] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    unplanned_exits: dict[str, list[int]] = field(default_factory=dict)
    decisions: int = 0
    events_on_topics: int = 0
    records_on_topics: dict[str, int] = field(default_factory=dict)
    audit_rows: int = 0
    replay: dict[str, Any] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def faults_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(f.planned.kind.value for f in self.faults).items()))

    def violations_by_invariant(self) -> dict[str, int]:
        return dict(sorted(Counter(v.invariant for v in self.violations).items()))

    def recovery_by_kind(self) -> dict[str, dict[str, float]]:
        """Median and worst recovery per kind, over the faults where progress was seen after."""
        by_kind: dict[str, list[float]] = {}
        for record in self.faults:
            if record.recovery_s is not None:
                by_kind.setdefault(record.planned.kind.value, []).append(record.recovery_s)
        return {
            kind: {"median_s": round(sorted(v)[len(v) // 2], 2), "max_s": round(max(v), 2)}
            for kind, v in sorted(by_kind.items())
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": f"chaos_{self.profile.name}",
            "profile": self.profile.name,
            "seed": self.seed,
            "run_id": self.run_id,
            "changes": self.changes,
            "outcomes": self.outcomes,
            "fencing": self.fencing,
            "faults_injected": len(self.faults),
            "faults_by_kind": self.faults_by_kind(),
            "recovery_by_kind": self.recovery_by_kind(),
            "faults": [f.to_json() for f in self.faults],
            "violations": len(self.violations),
            "violations_by_invariant": self.violations_by_invariant(),
            "violation_details": [v.to_json() for v in self.violations[:100]],
            "unplanned_exits": self.unplanned_exits,
            "decisions": self.decisions,
            "events_on_topics": self.events_on_topics,
            "records_on_topics": self.records_on_topics,
            "audit_rows": self.audit_rows,
            "replay": self.replay,
            "durations_s": {k: round(v, 1) for k, v in self.durations_s.items()},
            "load_before": self.load_before,
            "load_after": self.load_after,
            "machine": describe_machine(),
        }


@dataclass
class _Run:
    """The live parts of a run, for the fault injector."""

    profile: Profile
    cluster: PrivateCluster
    children: Children
    coordinator: Child
    agents: list[Child]
    workload: Workload
    follow: DecisionFollower
    progress: Progress
    issuer: TestIssuer
    workdir: Path

    def supervise(self) -> None:
        for name in self.children.supervise():
            self.progress(f"{name} had exited by itself; started again")


def run_chaos(profile: Profile, seed: int, workdir: Path, progress: Progress) -> ChaosReport:
    """Carry out one run in `workdir` (servers, logs, tables) and return its figures."""
    run_id = uuid.uuid4().hex[:8]
    report = ChaosReport(profile, seed, run_id, load_before=os.getloadavg())
    started = time.monotonic()
    cluster = PrivateCluster.create(workdir / "servers", seed)
    cql_port = cluster.settings.cassandra_port
    progress(f"starting private Kafka {cluster.bootstrap} and Cassandra :{cql_port}")
    try:
        report.durations_s["servers_up"] = cluster.up()
        with Children(workdir / "logs", cluster.child_env()) as children:
            _run_with_servers(report, cluster, children, workdir, progress)
    finally:
        cluster.down()
    report.durations_s["total"] = time.monotonic() - started
    report.load_after = os.getloadavg()
    return report


def _run_with_servers(
    report: ChaosReport,
    cluster: PrivateCluster,
    children: Children,
    workdir: Path,
    progress: Progress,
) -> None:
    profile, rng = report.profile, random.Random(report.seed)
    issuer = TestIssuer.new()
    trust = issuer.write_trust_file(workdir / "trusted-issuers.json")
    coordinator = children.spawn("coordinator", _coordinator_args(report, workdir, trust))
    sink = children.spawn(
        "audit-sink", ["audit", "sink", "--group", f"chaos-audit-{report.run_id}", "--batch", "500"]
    )
    agents = [
        _spawn_agent(children, issuer, workdir, report.run_id, n, profile)
        for n in range(profile.agents)
    ]
    workload = Workload(cluster.bootstrap, report.run_id, profile.repos, issuer, rng)
    try:
        with DecisionFollower(cluster.bootstrap, cluster.settings.partitions) as follow:
            run = _Run(
                profile, cluster, children, coordinator, agents, workload, follow, progress,
                issuer, workdir,
            )  # fmt: skip
            phase = time.monotonic()
            _drive(run, report)
            report.durations_s["faults_and_workload"] = time.monotonic() - phase
            phase = time.monotonic()
            _settle(run)
            report.durations_s["settle"] = time.monotonic() - phase
            for record in report.faults:
                arrived = follow.progress_after(record.healed_ms) if record.healed_ms else None
                if arrived is not None:
                    record.recovery_s = (arrived - record.healed_ms) / 1000
        report.changes = len(workload.submitted)
        for agent in agents:
            agent.stop()
        report.replay = _verify_replay(cluster, report.run_id)
        coordinator.stop()
        phase = time.monotonic()
        evidence, stored, rows = _audit_caught_up(cluster, progress)
        report.durations_s["audit_catch_up"] = time.monotonic() - phase
        sink.stop()
        _check(report, workload, evidence, stored, rows)
        _write_lost_timelines(workdir / LOST_TIMELINES, report, evidence.decisions, progress)
        report.unplanned_exits = {
            c.name: c.unplanned_exits for c in children.all if c.unplanned_exits
        }
    finally:
        workload.close()


def _coordinator_args(report: ChaosReport, workdir: Path, trust: Path) -> list[str]:
    return [
        "run", "processors", "--app-id", f"chaos-{report.run_id}",
        "--data-dir", str(workdir / "processors"), "--store", "rocksdb",
        "--trusted-issuers", str(trust), "--tick-interval-ms", str(TICK_MS),
        "--lease-ttl-ms", str(report.profile.lease_ttl_ms), "--loglevel", "warning",
    ]  # fmt: skip


def _spawn_agent(
    children: Children,
    issuer: TestIssuer,
    workdir: Path,
    run_id: str,
    number: int,
    profile: Profile,
) -> Child:
    name = f"agent-{number}"
    args = [
        "run", "agent", "sdlcflow.chaos.agents:AGENTS",
        "--concurrency", str(profile.agent_concurrency),
        "--group", f"chaos-agents-{run_id}", "--drain-timeout", "2",
    ]  # fmt: skip
    return children.spawn(name, args, _credential_env(issuer, workdir, name))


def _credential_env(issuer: TestIssuer, workdir: Path, name: str) -> dict[str, str]:
    """A fresh key and credential for agent `name` (issued now), as its environment."""
    actor = issuer.actor(
        f"chaos-{name}", capabilities=CAPABILITIES, issued_at=now_ms(), ttl_ms=_AGENT_TTL_MS
    )
    key_path = workdir / f"{name}-{uuid.uuid4().hex[:8]}.pem"  # keys are never overwritten
    save_private_key(actor.key, key_path)
    return {"SDLCFLOW_AGENT_CREDENTIAL": actor.credential, "SDLCFLOW_AGENT_KEY": str(key_path)}


# --------------------------------------------------------------------------------------------
# the workload and the faults


def _drive(run: _Run, report: ChaosReport) -> None:
    """Submit the changes over the first 60% of the fault window while the faults go off."""
    profile = run.profile
    submit_over = profile.fault_window_s * 0.6
    errors: list[BaseException] = []

    def submit_all() -> None:
        try:
            for index in range(profile.changes):
                run.workload.submit(index)
                time.sleep(submit_over / profile.changes)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    submitter = threading.Thread(target=submit_all, name="chaos-submit", daemon=True)
    window_start = time.monotonic()
    submitter.start()
    background: list[threading.Thread] = []
    for planned in schedule(report.seed, profile):
        _sleep_supervised(run, window_start + planned.at_s - time.monotonic())
        if planned.kind is FaultKind.STOP_CASSANDRA:
            detail = f"Cassandra stopped for {planned.hold_s:.0f} s and started again"
            record = FaultRecord(planned, now_ms(), 0, detail)
            background.append(_stop_cassandra(run, planned, record))
        else:
            record = _inject(run, planned)
        run.progress(f"fault {planned.kind.value}: {record.detail}")
        report.faults.append(record)
        run.supervise()
    submitter.join(timeout=profile.settle_timeout_s)
    for thread in background:
        thread.join(timeout=profile.settle_timeout_s)
    if errors:
        raise ChaosError(f"the workload could not submit its changes: {errors[0]}")


def _sleep_supervised(run: _Run, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, _SUPERVISE_S))
        run.supervise()


def _inject(run: _Run, planned: PlannedFault) -> FaultRecord:
    injected = now_ms()
    detail = _FAULTS[planned.kind](run, planned)
    return FaultRecord(planned, injected, now_ms(), detail)


def _busy_agent(run: _Run, planned: PlannedFault) -> tuple[Child, int]:
    """An agent that holds leases now (so the fault lands mid-task), waiting a little for one;
    the planned target when several do. Also how many leases it holds."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        holders = Counter(lease.holder for lease in run.follow.live_leases())
        busy = [agent for agent in run.agents if holders[_holder(agent)]]
        if busy or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pool = busy or run.agents
    agent = pool[planned.target % len(pool)]
    return agent, holders[_holder(agent)]


def _holder(agent: Child) -> str:
    return f"chaos-{agent.name}"


def _kill_coordinator(run: _Run, planned: PlannedFault) -> str:
    run.coordinator.kill()
    time.sleep(planned.hold_s)
    run.coordinator.start()
    return "worker SIGKILLed and started again"


def _kill_agent(run: _Run, planned: PlannedFault) -> str:
    agent, leases = _busy_agent(run, planned)
    agent.kill()
    time.sleep(planned.hold_s)
    agent.start()
    return f"{agent.name} SIGKILLed holding {leases} leases, started again"


def _bounce_kafka(run: _Run, planned: PlannedFault) -> str:
    run.cluster.stop("kafka")
    time.sleep(planned.hold_s)
    run.cluster.start("kafka")
    return f"broker stopped for {planned.hold_s:.0f} s and started again"


def _stop_cassandra(run: _Run, planned: PlannedFault, record: FaultRecord) -> threading.Thread:
    """Stop the audit store now and start it again in the background after the hold (its
    start takes a minute on a loaded machine; the other faults go on meanwhile)."""
    run.cluster.stop("cassandra")

    def restart() -> None:
        time.sleep(planned.hold_s)
        run.cluster.start("cassandra", timeout_s=RESTART_TIMEOUT_S)
        record.healed_ms = now_ms()

    thread = threading.Thread(target=restart, name="chaos-cassandra", daemon=True)
    thread.start()
    return thread


def _zombie_agent(run: _Run, planned: PlannedFault) -> str:
    agent, leases = _busy_agent(run, planned)
    agent.pause()
    time.sleep(planned.hold_s)
    agent.resume()
    return f"{agent.name} SIGSTOPped {planned.hold_s:.0f} s holding {leases} leases"


def _delay_coordinator(run: _Run, planned: PlannedFault) -> str:
    run.coordinator.pause()
    time.sleep(planned.hold_s)
    run.coordinator.resume()
    return f"worker SIGSTOPped for {planned.hold_s:.1f} s"


def _revoke_lease(run: _Run, planned: PlannedFault) -> str:
    deadline = time.monotonic() + BUSY_WAIT_S * 3
    while not (leases := run.follow.live_leases()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not leases:
        return "no live lease to revoke"
    lease = leases[planned.target % len(leases)]
    run.workload.revoke(lease)
    # the revocation also refuses the holder's credential from now on: like ops would, give
    # the agent a new one, and restart it gracefully (its running tasks hear of the loss)
    agent = next(a for a in run.agents if _holder(a) == lease.holder)
    agent.stop()
    time.sleep(0.01)  # the new credential is issued after the revocation
    agent.env = {**agent.env, **_credential_env(run.issuer, run.workdir, agent.name)}
    agent.start()
    return (
        f"revoked {lease.holder}'s credential and its leases in {lease.repo} (one on "
        f"{lease.task_id}); the agent restarted with a new credential"
    )


def _move_head(run: _Run, planned: PlannedFault) -> str:
    moved = run.workload.move_head(planned.target, run.follow.closed())
    return f"head of {moved} moved" if moved else "no open change to move"


def _duplicate_inputs(run: _Run, planned: PlannedFault) -> str:
    return f"{run.workload.resend(planned.target, latest=True)} latest input records re-produced"


def _replay_offsets(run: _Run, planned: PlannedFault) -> str:
    return f"{run.workload.resend(planned.target, latest=False)} old input records re-produced"


_FAULTS: dict[FaultKind, Callable[[_Run, PlannedFault], str]] = {
    FaultKind.KILL_COORDINATOR: _kill_coordinator,
    FaultKind.KILL_AGENT: _kill_agent,
    FaultKind.BOUNCE_KAFKA: _bounce_kafka,
    FaultKind.ZOMBIE_AGENT: _zombie_agent,
    FaultKind.DELAY_COORDINATOR: _delay_coordinator,
    FaultKind.REVOKE_LEASE: _revoke_lease,
    FaultKind.MOVE_HEAD: _move_head,
    FaultKind.DUPLICATE_INPUTS: _duplicate_inputs,
    FaultKind.REPLAY_OFFSETS: _replay_offsets,
}


# --------------------------------------------------------------------------------------------
# the ending and the checks


def _settle(run: _Run) -> None:
    """Wait until every submitted change is closed (or the profile's settle timeout)."""
    deadline = time.monotonic() + run.profile.settle_timeout_s
    while time.monotonic() < deadline:
        open_changes = set(run.workload.submitted) - run.follow.closed()
        if not open_changes:
            return
        _sleep_supervised(run, 1.0)
    run.progress(f"{len(set(run.workload.submitted) - run.follow.closed())} changes still open")


def _verify_replay(cluster: PrivateCluster, run_id: str) -> dict[str, Any]:
    replay = subprocess.run(
        [sys.executable, "-m", "sdlcflow.cli", "replay", "--verify", "--json",
         "--app-id", f"chaos-{run_id}"],
        env=cluster.child_env(), capture_output=True, text=True, timeout=REPLAY_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    try:
        result: dict[str, Any] = json.loads(replay.stdout)
    except json.JSONDecodeError:
        raise ChaosError(
            f"replay --verify printed no JSON (exit {replay.returncode}):\n{replay.stderr[-2000:]}"
        ) from None
    return result


def _audit_caught_up(
    cluster: PrivateCluster, progress: Progress
) -> tuple[TopicEvidence, list[str], Counter[str]]:
    """Read the topics, then wait until the store holds every event on them (or time out)."""
    evidence = read_topics(cluster.bootstrap)
    deadline = time.monotonic() + AUDIT_WAIT_S
    settings = cluster.settings
    with cql_session(settings) as session:
        while True:
            stored = stored_event_ids(session, settings.keyspace)
            missing = len(evidence.event_ids - set(stored))
            if not missing or time.monotonic() > deadline:
                break
            progress(f"audit store: {missing} events not stored yet")
            time.sleep(2.0)
        # the sink may have dead-lettered records meanwhile: read the topics once more
        evidence = read_topics(cluster.bootstrap)
        stored = stored_event_ids(session, settings.keyspace)
        rows = change_rows(session, settings.keyspace)
    return evidence, stored, rows


def _check(
    report: ChaosReport,
    workload: Workload,
    evidence: TopicEvidence,
    stored: list[str],
    rows: Counter[str],
) -> None:
    decisions = evidence.decisions
    report.decisions = len(invariants.distinct(decisions))
    report.events_on_topics = len(evidence.event_ids)
    report.records_on_topics = dict(sorted(evidence.records.items()))
    report.audit_rows = len(stored)
    report.outcomes = _count(decisions, invariants.CLOSING)
    report.fencing = _count(decisions, FENCING)
    report.violations = (
        invariants.decision_violations(workload.submitted, decisions)
        + invariants.audit_violations(evidence.event_ids, stored, rows)
        + invariants.replay_violations(report.replay)
    )


def _write_lost_timelines(
    path: Path, report: ChaosReport, decisions: list[Event], progress: Progress
) -> None:
    """Each open change's decisions in log order, for whoever looks into why it stayed open
    (an offer nobody asked for, a grant never answered, a revision never re-offered)."""
    lost = {v.subject for v in report.violations if v.invariant == "change-lost"}
    if not lost:
        return
    timelines: dict[str, list[str]] = {change_id: [] for change_id in sorted(lost)}
    for event in invariants.distinct(decisions):
        timeline = timelines.get(event.envelope.change_id or "")
        if timeline is not None:
            timeline.append("  " + _timeline_line(event))
    lines = [line for change_id, t in timelines.items() for line in (f"change {change_id}", *t)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    progress(f"the decisions of the {len(lost)} open changes: {path}")


def _timeline_line(event: Event) -> str:
    envelope, payload = event.envelope, event.payload
    step = (envelope.task_id or "").rsplit("/", 1)[-1] or "-"
    facts = [f"{name}={getattr(payload, name)}" for name in _FACTS if hasattr(payload, name)]
    return f"{envelope.occurred_at} {type(payload).__name__} {step} {' '.join(facts)}".rstrip()


LOST_TIMELINES = "lost-changes.txt"
_FACTS = ("epoch", "holder", "attempt", "reason", "rejected_type")


# decisions that show the coordinator fencing someone off: what the faults provoked
FENCING = (
    ev.LeaseExpired,
    ev.LeaseRevoked,
    ev.ResultRejected,
    ev.LeaseHeartbeatRejected,
    ev.LeaseDenied,
    ev.EventRejected,
)


def _count(decisions: list[Event], types: tuple[type, ...]) -> dict[str, int]:
    """Distinct decisions of the given types, counted per type name."""
    found = Counter(
        type(e.payload).__name__
        for e in invariants.distinct(decisions)
        if isinstance(e.payload, types)
    )
    return dict(sorted(found.items()))
