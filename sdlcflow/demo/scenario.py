"""The incident, step by step: act like the agents and reviewers would, then prove from the log
that sdlcflow decided what the narration says. A step that cannot be proven fails the run."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sdlcflow.agents.reference import (
    DependencyUpdateInput,
    DependencyUpdateResult,
    EnvRenameInput,
    EnvRenameResult,
    Workspace,
    rename_env_var,
    update_dependency,
)
from sdlcflow.artifacts import ReleaseAction, digest_of
from sdlcflow.core import events as ev
from sdlcflow.core.events import Event
from sdlcflow.demo.approvals import sign_approvals
from sdlcflow.demo.audit import show_audit_trail
from sdlcflow.demo.culprit import grab_prod_lease
from sdlcflow.demo.errors import DemoError, StepFailed
from sdlcflow.demo.narration import Narrator
from sdlcflow.demo.stage import (
    Stage,
    forget_run,
    plan_stage,
    seed_production,
    start_agents,
    start_audit_sink,
    start_coordinator,
)
from sdlcflow.demo.watch import LogWatch, Match, WaitTimedOut, of_type
from sdlcflow.gitops import read_blob
from sdlcflow.streams.producer import ChangeRequestProducer, ChangeSpec, EventPublisher, Submission

AUTH_PACKAGE = "pyjwt"
BREAKING_VERSION = "3.0.0"  # passes the unit tests, fails the adapter's smoke check
SUPPORTED_VERSION = "2.10.1"  # the fix: stay on the major version the adapter speaks
OLD_VARIABLE, NEW_VARIABLE = "AUTH_SECRET", "LOGIN_SECRET"
# the naive rename: everywhere but deploy/prod.env, as in the incident
NAIVE_RENAME_PATHS = ("service/config.py", "tests/test_config.py", "deploy/staging.env")
SERVICE_RESOURCE = "service:login"
ENVIRONMENTS = ("staging", "prod")


@dataclass(frozen=True)
class ScenarioOptions:
    """How to run the demo.

    Args:
        bootstrap: Kafka bootstrap servers.
        template: the pipeline template both changes go through.
        wait_s: the longest any one awaited event may take.
        workdir: where the run directory goes (default: a new temp dir).
        keep: keep the run directory (logs, repos, keys) afterwards.
        reviewers: the human reviewers who sign approvals.
    """

    bootstrap: str
    template: str = "deployment"
    wait_s: float = 180.0
    workdir: Path | None = None
    keep: bool = False
    reviewers: tuple[str, ...] = ("alice-reviewer", "bob-reviewer")


@dataclass
class StepRecord:
    number: int
    title: str
    evidence: list[tuple[str, str]] = field(default_factory=list)
    ok: bool = False


@dataclass
class IncidentRun:
    """What the run showed: ids and SHAs per role, each step's evidence, the audit rows."""

    run_id: str = ""
    repo: str = ""
    root: str = ""
    started_at: str = ""  # ISO time (UTC, seconds): the report's window starts here
    changes: dict[str, str] = field(default_factory=dict)  # role -> change id
    shas: dict[str, str] = field(default_factory=dict)  # role -> head SHA
    steps: list[StepRecord] = field(default_factory=list)
    decisions: dict[str, list[str]] = field(default_factory=dict)  # change id -> event types
    audit_rows: int = 0
    problem: str = ""  # why the run stopped early, naming the step and the log to read

    @property
    def ok(self) -> bool:
        return not self.problem and len(self.steps) == len(ACTS) and all(s.ok for s in self.steps)


@dataclass
class Play:
    """One run in progress: the stage, the watch, the narrator and the record being kept."""

    stage: Stage
    watch: LogWatch
    narrator: Narrator
    options: ScenarioOptions
    run: IncidentRun
    producer: ChangeRequestProducer
    current: StepRecord | None = None

    def step(self, number: int, title: str, why: str) -> StepRecord:
        self.narrator.step(number, title, why)
        self.current = StepRecord(number, title)
        self.run.steps.append(self.current)
        return self.current

    def done(self, text: str) -> None:
        assert self.current is not None
        self.current.ok = True
        self.narrator.passed(text)

    def evidence(self, label: str, value: str) -> None:
        if self.current is not None:
            self.current.evidence.append((label, value))
        self.narrator.evidence(label, value)

    def expect(
        self, expecting: str, match: Match, hint: str, *, timeout_s: float | None = None
    ) -> Event:
        """Wait for the event (spinner, timeout, service health) and record where it was read."""
        step = self.current.title if self.current else "setup"
        with self.narrator.waiting(expecting):
            try:
                event = self.watch.wait_for(
                    expecting,
                    match,
                    timeout_s=timeout_s or self.options.wait_s,
                    hint=hint,
                    health=self.stage.services.check,
                )
            except WaitTimedOut as exc:
                raise StepFailed(step, str(exc)) from None
        seen = self.watch.located(event.event_id)
        where = f" @ {seen.topic}[{seen.partition}]#{seen.offset}" if seen else ""
        self.evidence(event.type, f"{event.event_id}{where}")
        return event

    def never(self, what: str, match: Match) -> None:
        """Check that no such event was decided so far (a block is shown by an absence)."""
        found = self.watch.events(match)
        if found:
            step = self.current.title if self.current else "setup"
            raise StepFailed(
                step, f"{what}, but {found[0].type} {found[0].event_id} says otherwise"
            )

    def log_hint(self, *services: str) -> str:
        logs = self.stage.services.logs
        return "Read " + ", ".join(str(logs / f"{name}.log") for name in services) + "."

    def submit(self, role: str, spec: ChangeSpec, change_id: str | None = None) -> Submission:
        sub = self.producer.submit(spec, change_id=change_id)
        self.run.changes.setdefault(role, sub.change_id)
        self.run.shas[role] = spec.head_sha
        self.evidence(
            f"{role} ChangeRequested",
            f"{sub.event_id} (change {sub.change_id}, trace {sub.trace_id})",
        )
        return sub


def run_incident(options: ScenarioOptions, narrator: Narrator) -> IncidentRun:
    """Play the whole incident; a step that did not happen ends the run with `run.problem`.

    Every child process is stopped on the way out, also on KeyboardInterrupt.
    """
    root = Path(tempfile.mkdtemp(prefix="sdlcflow-demo-", dir=options.workdir))
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    run = IncidentRun(root=str(root), started_at=started)
    try:
        stage = plan_stage(root, options.bootstrap, options.template, options.reviewers)
        run.run_id, run.repo = stage.run_id, stage.repo
        try:
            _play(stage, options, narrator, run)
        finally:  # every child is stopped by now: nothing reads the run's topics any more
            for problem in forget_run(stage):
                narrator.say(f"could not clean up {problem}")
    finally:
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)
    return run


def _play(stage: Stage, options: ScenarioOptions, narrator: Narrator, run: IncidentRun) -> None:
    """Run the acts with the services up and the log watched; record the first failure."""
    with stage.services, LogWatch(options.bootstrap, stage.repo) as watch:
        publisher = EventPublisher(options.bootstrap)
        try:
            producer = ChangeRequestProducer(publisher, actor_id="demo-producer")
            play = Play(stage, watch, narrator, options, run, producer)
            for act in ACTS:
                act(play)
        except DemoError as exc:
            run.problem = str(exc)
            narrator.failed(run.problem)
        finally:
            publisher.flush()
            run.decisions = _decisions_by_change(watch)


def _decisions_by_change(watch: LogWatch) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event in watch.events():
        found.setdefault(event.envelope.change_id or "-", []).append(event.type)
    return found


# --------------------------------------------------------------------------------------------
# 1. set up


def set_up(play: Play) -> None:
    stage = play.stage
    play.step(1, "Set up", "a fresh run: its own repository, identities, coordinator and agents")
    play.evidence("run directory", str(stage.root))
    play.evidence("repository", f"{stage.repo} -> {stage.remote}")
    play.evidence("main", stage.sample.main)
    play.evidence("issuer key", stage.identities.issuer_key_id)
    play.evidence("reviewers", ", ".join(h.actor_id for h in stage.identities.reviewers))
    seed_production(stage)
    prod = stage.releases.current("prod")
    play.evidence("prod before the incident", f"release #{prod.seq if prod else '?'} of main")
    start_coordinator(stage)
    play.evidence(
        "coordinator", f"faust app {stage.app_id} (log: {stage.services.logs}/coordinator.log)"
    )
    start_agents(stage)
    for capability, service in stage.agents.items():
        play.evidence(f"agent {capability}", f"pid {service.process.pid} (log: {service.log})")
    start_audit_sink(stage)
    if stage.audit_sink is not None:
        play.evidence(
            "audit sink", f"pid {stage.audit_sink.process.pid} (log: {stage.audit_sink.log})"
        )
    for piece, problem in stage.missing.items():
        play.narrator.failed(f"missing {piece}: {problem}")
    play.done("the stage is set" + (" (with missing pieces, see above)" if stage.missing else ""))


# --------------------------------------------------------------------------------------------
# 2. two agents change the same service at once


def change_concurrently(play: Play) -> None:
    stage = play.stage
    play.step(
        2,
        "Two agents change the login service at once",
        f"a dependency agent bumps {AUTH_PACKAGE} to {BREAKING_VERSION}; a refactor agent renames "
        f"{OLD_VARIABLE} to {NEW_VARIABLE} but misses deploy/prod.env",
    )
    bump_input = DependencyUpdateInput(
        remote=stage.remote,
        base=stage.sample.main,
        branch=f"deps/{AUTH_PACKAGE}-{BREAKING_VERSION}",
        package=AUTH_PACKAGE,
        version=BREAKING_VERSION,
    )
    rename_input = EnvRenameInput(
        remote=stage.remote,
        base=stage.sample.main,
        branch="refactor/login-secret",
        old=OLD_VARIABLE,
        new=NEW_VARIABLE,
        paths=NAIVE_RENAME_PATHS,
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        bump_job = pool.submit(
            update_dependency, bump_input, Workspace.at(stage.root / "work-bump")
        )
        rename_job = pool.submit(
            rename_env_var, rename_input, Workspace.at(stage.root / "work-rename")
        )
        bump, rename = bump_job.result(), rename_job.result()
    play.evidence("bump", f"{bump.head} touches {', '.join(bump.paths)}")
    play.evidence("rename", f"{rename.head} touches {', '.join(rename.paths)}")
    remaining = sorted({hit.path for hit in rename.remaining})
    play.evidence("still reading the old name", ", ".join(remaining) or "nothing")
    if not remaining:
        raise StepFailed(
            "changes", "the naive rename left no reference behind; the incident needs one"
        )
    bump_sub = play.submit("bump", _bump_spec(stage, bump))
    rename_sub = play.submit("rename", _rename_spec(stage, rename))
    hint = play.log_hint("coordinator")
    for role, sub in (("bump", bump_sub), ("rename", rename_sub)):
        play.expect(
            f"ChangePlanned of the {role}", of_type("ChangePlanned", change_id=sub.change_id), hint
        )
    play.done("both changes were planned with their real SHAs")


def _bump_spec(stage: Stage, bump: DependencyUpdateResult, *, title: str = "") -> ChangeSpec:
    return ChangeSpec(
        repo=stage.repo,
        base_sha=bump.base,
        head_sha=bump.head,
        kind="dependency-update",
        template=stage.template.name,
        lockfile_digest=bump.lockfile_digest,
        title=title or f"Bump {bump.package} {bump.old_version} -> {bump.new_version}",
        paths=bump.paths,
        labels=("dependency", "auth"),
        resources=(SERVICE_RESOURCE,),
        environments=ENVIRONMENTS,
    )


def _rename_spec(stage: Stage, rename: EnvRenameResult) -> ChangeSpec:
    lockfile = read_blob(stage.remote, rename.head, "requirements.lock") or b""
    return ChangeSpec(
        repo=stage.repo,
        base_sha=rename.base,
        head_sha=rename.head,
        kind="refactor",
        template=stage.template.name,
        lockfile_digest=digest_of(lockfile),
        title=f"Rename {rename.old} to {rename.new}",
        paths=rename.paths,
        labels=("refactor",),
        resources=(SERVICE_RESOURCE,),
        environments=ENVIRONMENTS,
    )


# --------------------------------------------------------------------------------------------
# 3. conflict detected, serialised; each change alone passes its tests


def detect_conflict(play: Play) -> None:
    bump_id, rename_id = play.run.changes["bump"], play.run.changes["rename"]
    play.step(
        3,
        "sdlcflow detects the conflict and serialises the changes",
        "both declare the login service and the staging/prod environments: the later one waits",
    )
    hint = play.log_hint("coordinator")
    conflict = play.expect(
        "ConflictDetected of the rename against the bump",
        lambda e: (
            of_type("ConflictDetected", change_id=rename_id)(e)
            and isinstance(e.payload, ev.ConflictDetected)
            and e.payload.other_change_id == bump_id
        ),
        hint,
    )
    assert isinstance(conflict.payload, ev.ConflictDetected)
    play.evidence("overlaps", ", ".join(conflict.payload.overlaps))
    play.expect(
        "ResourceLeaseGranted to the bump", of_type("ResourceLeaseGranted", change_id=bump_id), hint
    )
    play.never(
        "the rename must not hold the environments while the bump does",
        of_type("ResourceLeaseGranted", change_id=rename_id),
    )
    play.stage.require_agents("conflict", "test")
    test_hint = play.log_hint("coordinator", "agent-test")
    for role, change_id in (("bump", bump_id), ("rename", rename_id)):
        done = play.expect(
            f"TaskCompleted of the {role}'s tests",
            of_type("TaskCompleted", change_id=change_id, task_step="test"),
            test_hint,
        )
        assert isinstance(done.payload, ev.TaskCompleted)
        verified = done.payload.verified
        play.evidence(f"{role} tests passed on", verified.head_sha if verified else "?")
    play.done("conflict recorded; each change alone passes its tests; the rename waits its turn")


# --------------------------------------------------------------------------------------------
# 4. the bump's staging deploy fails its smoke check; staging and prod keep what they ran


def smoke_fails(play: Play) -> None:
    stage = play.stage
    bump_id, bump_head = play.run.changes["bump"], play.run.shas["bump"]
    play.step(
        4,
        "A deploy that fails its smoke check rolls back",
        f"{AUTH_PACKAGE} {BREAKING_VERSION} passes the unit tests, but the auth adapter only "
        "speaks 2.x: the staged slot's login smoke check fails and nothing is switched",
    )
    stage.require_agents("smoke", "deploy")
    hint = play.log_hint("coordinator", "agent-deploy")
    failed = play.expect(
        "the failed staging deploy of the bump (TaskDeadLettered or RetryScheduled)",
        of_type("TaskDeadLettered", "RetryScheduled", change_id=bump_id, task_step="staging"),
        hint,
    )
    play.evidence("deploy agent said", getattr(failed.payload, "error", ""))
    play.expect(
        "EscalationRaised for the bump", of_type("EscalationRaised", change_id=bump_id), hint
    )
    closed = play.expect(
        "ChangeFailed of the bump", of_type("ChangeFailed", change_id=bump_id), hint
    )
    assert isinstance(closed.payload, ev.ChangeFailed)
    play.evidence("closed", closed.payload.reason)
    refused = [
        r
        for r in stage.releases.history("staging")
        if r.source_sha == bump_head
        and r.action in (ReleaseAction.REJECTED, ReleaseAction.ROLLED_BACK)
    ]
    if not refused:
        raise StepFailed(
            "smoke",
            f"the staging release log has no rejected or rolled-back release of {bump_head}; "
            f"read {stage.services.logs}/agent-deploy.log",
        )
    play.evidence(
        "staging release record",
        f"#{refused[-1].seq} {refused[-1].action.value}: {refused[-1].smoke_log or 'no smoke log'}",
    )
    for env in ENVIRONMENTS:
        current = stage.releases.current(env)
        if current is None or current.source_sha != stage.sample.main:
            raise StepFailed("smoke", f"{env} should still run main {stage.sample.main}: {current}")
        play.evidence(env, f"still release #{current.seq} of main {current.source_sha[:12]}")
    play.done("the broken build never served traffic; the previous release stayed active")


# --------------------------------------------------------------------------------------------
# 5. the rename gets its turn and policy blocks it


def rename_blocked(play: Play) -> None:
    rename_id = play.run.changes["rename"]
    play.step(
        5,
        "Policy blocks the half-done rename",
        f"the bump is out of the way, so the rename may deploy to staging (whose config it did "
        f"rename); policy sees deploy/prod.env still reading {OLD_VARIABLE}: FAIL",
    )
    play.stage.require_agents("rename", "deploy", "policy")
    hint = play.log_hint("coordinator", "agent-deploy", "agent-policy")
    play.expect(
        "ResourceLeaseGranted to the rename",
        of_type("ResourceLeaseGranted", change_id=rename_id),
        hint,
    )
    play.expect(
        "the rename's staging deploy",
        of_type("TaskCompleted", change_id=rename_id, task_step="staging"),
        hint,
    )
    policy = play.expect(
        "the rename's PolicyEvaluated", of_type("PolicyEvaluated", change_id=rename_id), hint
    )
    assert isinstance(policy.payload, ev.PolicyEvaluated)
    play.evidence("policy", f"{policy.payload.decision.value}: {'; '.join(policy.payload.reasons)}")
    if policy.payload.decision is not ev.PolicyDecision.FAIL:
        raise StepFailed("rename", f"policy said {policy.payload.decision.value}, expected FAIL")
    blocked = play.expect(
        "ChangeBlocked of the rename", of_type("ChangeBlocked", change_id=rename_id), hint
    )
    assert isinstance(blocked.payload, ev.ChangeBlocked)
    play.evidence("blocked", blocked.payload.reason)
    play.never("the rename must never reach prod", of_type("ChangePromoted", change_id=rename_id))
    play.done(f"the half-done rename is blocked; prod keeps reading {OLD_VARIABLE} safely")


# --------------------------------------------------------------------------------------------
# 6. the fixes: a supported pin first, the completed rename stacked on it


def promote_fix(play: Play) -> None:
    stage = play.stage
    play.step(
        6,
        "Only a fixed, human-approved change reaches prod",
        f"the dependency agent pins {AUTH_PACKAGE} {SUPPORTED_VERSION}; the refactor agent "
        "completes the rename on top of it. Policy says REVIEW for the sensitive bump, so prod "
        "waits for two reviewers' signatures",
    )
    fix = update_dependency(
        DependencyUpdateInput(
            remote=stage.remote,
            base=stage.sample.main,
            branch=f"deps/{AUTH_PACKAGE}-{SUPPORTED_VERSION}",
            package=AUTH_PACKAGE,
            version=SUPPORTED_VERSION,
        ),
        Workspace.at(stage.root / "work-fix"),
    )
    complete = rename_env_var(
        EnvRenameInput(
            remote=stage.remote,
            base=fix.head,
            branch="refactor/login-secret-complete",
            old=OLD_VARIABLE,
            new=NEW_VARIABLE,
        ),
        Workspace.at(stage.root / "work-rename-complete"),
    )
    if complete.remaining:
        raise StepFailed("fix", f"the completed rename still leaves {complete.remaining}")
    play.evidence("fix", f"{fix.head} pins {AUTH_PACKAGE} {SUPPORTED_VERSION}")
    play.evidence("completed rename", f"{complete.head} on top of the fix, no {OLD_VARIABLE} left")
    since = play.watch.mark()
    fix_sub = play.submit("fix", _bump_spec(stage, fix, title=f"Pin {AUTH_PACKAGE} to 2.x"))
    spec = _rename_spec(stage, complete)
    stacked = ChangeSpec(
        **{**spec.__dict__, "base_sha": stage.sample.main, "paths": (*fix.paths, *complete.paths)}
    )
    complete_sub = play.submit("complete", stacked)
    hint = play.log_hint("coordinator")
    conflict = play.expect(
        "ConflictDetected of the completed rename against the fix",
        lambda e: (
            of_type("ConflictDetected", change_id=complete_sub.change_id)(e)
            and isinstance(e.payload, ev.ConflictDetected)
            and e.payload.other_change_id == fix_sub.change_id
        ),
        hint,
    )
    assert isinstance(conflict.payload, ev.ConflictDetected)
    play.evidence("overlaps", ", ".join(conflict.payload.overlaps))
    carry_to_prod(play, fix_sub.change_id, fix.head, since, expect_review=True)
    play.done("the exact state every check and both reviewers verified is in prod")


def carry_to_prod(
    play: Play, change_id: str, head: str, since: int, *, expect_review: bool
) -> None:
    """Checks, policy, two signatures and the prod deploy of one change, each proven from
    events seen after `since` (a re-verified change's earlier results do not count)."""
    stage = play.stage
    stage.require_agents("promotion", "test", "deploy", "policy")
    hint = play.log_hint("coordinator", "agent-test", "agent-deploy", "agent-policy")
    later = play.watch.after(since)
    play.expect(
        "its tests", later(of_type("TaskCompleted", change_id=change_id, task_step="test")), hint
    )
    play.expect(
        "its staging deploy",
        later(of_type("TaskCompleted", change_id=change_id, task_step="staging")),
        hint,
    )
    policy = play.expect(
        "its PolicyEvaluated", later(of_type("PolicyEvaluated", change_id=change_id)), hint
    )
    assert isinstance(policy.payload, ev.PolicyEvaluated)
    decision = policy.payload.decision
    play.evidence(
        "policy", f"{decision.value}: {'; '.join(policy.payload.reasons) or 'no findings'}"
    )
    if decision is ev.PolicyDecision.FAIL or (
        expect_review and decision is not ev.PolicyDecision.REVIEW
    ):
        raise StepFailed("promotion", f"policy said {decision.value} for {change_id}")
    requested = play.expect(
        "ApprovalRequested", later(of_type("ApprovalRequested", change_id=change_id)), hint
    )
    assert isinstance(requested.payload, ev.ApprovalRequested)
    play.evidence("approvals required", str(requested.payload.required))
    play.never(
        "prod must not be offered before the approvals",
        later(of_type("TaskOffered", change_id=change_id, task_step="prod")),
    )
    grab_prod_lease(play, change_id, since)
    play.narrator.say("promotion to prod is blocked until the reviewers sign")
    sign_approvals(play, requested)
    promoted = play.expect(
        "ChangePromoted", later(of_type("ChangePromoted", change_id=change_id)), hint
    )
    assert isinstance(promoted.payload, ev.ChangePromoted)
    state = promoted.payload.state
    play.evidence(
        "promoted state",
        f"head {state.head_sha} base {state.base_sha} artifact {state.artifact_digest}",
    )
    if state.head_sha != head:
        raise StepFailed("promotion", f"promoted {state.head_sha}, but the change's head is {head}")
    prod = stage.releases.current("prod")
    if prod is None or prod.source_sha != head:
        raise StepFailed("promotion", f"prod should run {head}; it runs {prod}")
    play.evidence("prod", f"release #{prod.seq} of {prod.source_sha[:12]}")


# --------------------------------------------------------------------------------------------
# 7. the completed rename, re-verified on top of the fix, is promoted too


def reverify_on_top(play: Play) -> None:
    complete_id, fix_head = play.run.changes["complete"], play.run.shas["fix"]
    play.step(
        7,
        "The later change is re-verified on top of the earlier",
        "the fix landed while the completed rename waited: its base moved, so every check of "
        "it runs again against the new base before it may go anywhere",
    )
    hint = play.log_hint("coordinator")
    revised = play.expect(
        "ChangeRevised (BASE_MOVED) of the completed rename",
        lambda e: (
            of_type("ChangeRevised", change_id=complete_id)(e)
            and isinstance(e.payload, ev.ChangeRevised)
            and e.payload.reason is ev.ReviseReason.BASE_MOVED
        ),
        hint,
    )
    assert isinstance(revised.payload, ev.ChangeRevised)
    state = revised.payload.state
    play.evidence("re-verifying", f"head {state.head_sha} on base {state.base_sha}")
    if state.base_sha != fix_head:
        raise StepFailed("re-verify", f"rebased onto {state.base_sha}, not the fix {fix_head}")
    since = play.watch.position_of(revised.event_id)
    carry_to_prod(play, complete_id, play.run.shas["complete"], since, expect_review=False)
    play.done("re-verified on the new base, approved, promoted: prod runs the pin and the rename")


# --------------------------------------------------------------------------------------------
# 8. the audit trail


def audit_trail(play: Play) -> None:
    play.step(
        8, "The audit trail", "who did what, to which SHA, under which policy, from Cassandra"
    )
    show_audit_trail(play)
    play.done("every decision of the incident is in the audit store")


ACTS: tuple[Callable[[Play], None], ...] = (
    set_up,
    change_concurrently,
    detect_conflict,
    smoke_fails,
    rename_blocked,
    promote_fix,
    reverify_on_top,
    audit_trail,
)
