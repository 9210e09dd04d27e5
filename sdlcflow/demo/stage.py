"""Setting the stage: a fresh run directory, the sample service's repository, identities, the
production it already runs, and the coordinator, agents and audit sink as child processes.

Nothing here decides anything: the coordinator started here makes every decision, and the
scenario only reads them back.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from sdlcflow.agents.reference import DeployInput, Workspace, deploy
from sdlcflow.artifacts import ArtifactStore, Releases
from sdlcflow.audit.sink import is_audited
from sdlcflow.core.events import Authority
from sdlcflow.core.planner import Template, load_templates, packaged_template_texts
from sdlcflow.demo.errors import DemoError, MissingPiece
from sdlcflow.demo.identities import DemoIdentities, issue_identities
from sdlcflow.demo.services import Service, Services
from sdlcflow.demo.watch import start_group_at_end
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.infra.topics import forget_on_broker
from sdlcflow.processors.engine import INPUT_TOPICS
from sdlcflow.streams.topics import task_topic

BINDINGS_MODULE = "sdlcflow.agents.bindings"
AUDIT_COMMANDS_MODULE = "sdlcflow.audit.commands"
# How the reference agents find the git remote of a repository (sdlcflow.agents.bindings).
REPOS_ENV = "SDLCFLOW_GIT_REMOTES"


def now_ms() -> int:
    return int(time.time() * 1000)


def agent_capabilities(template: Template) -> tuple[str, ...]:
    """The capabilities a template needs agents for (human steps are the reviewers' work)."""
    seen: list[str] = []
    for step in template.steps:
        if step.authority is Authority.AGENT and step.capability not in seen:
            seen.append(step.capability)
    return tuple(seen)


def reference_agents() -> Mapping[str, object]:
    """The reference agents bound to capabilities, or {} when the bindings are not built."""
    try:
        bindings = importlib.import_module(BINDINGS_MODULE)
    except ModuleNotFoundError:
        return {}
    found = getattr(bindings, "REFERENCE_AGENTS", {})
    return found if isinstance(found, Mapping) else {}


def has_audit_commands() -> bool:
    try:
        module = importlib.import_module(AUDIT_COMMANDS_MODULE)
    except ModuleNotFoundError:
        return False
    return hasattr(module, "audit") and hasattr(module, "report")


@dataclass
class Stage:
    """Everything the scenario acts on and reads from."""

    run_id: str
    repo: str
    root: Path
    data_dir: Path
    bootstrap: str
    app_id: str
    template: Template
    sample: SampleRepo
    identities: DemoIdentities
    services: Services
    agents: dict[str, Service] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # piece -> what exactly is missing
    audit_sink: Service | None = None

    @property
    def remote(self) -> Path:
        return self.sample.remote

    @property
    def releases(self) -> Releases:
        """The release records the deploy agent writes (its artifact store under the data dir)."""
        return Releases(ArtifactStore(self.data_dir / "artifacts"))

    def require_agents(self, step: str, *capabilities: str) -> None:
        """Fail at once, naming the missing piece, instead of waiting for a result nobody makes."""
        absent = [c for c in capabilities if c not in self.agents]
        if absent:
            details = "; ".join(self.missing.get(f"agent:{c}", f"no agent for {c}") for c in absent)
            raise MissingPiece(f"step {step!r} needs agents for {', '.join(absent)}: {details}")


def plan_stage(root: Path, bootstrap: str, template_name: str, reviewers: tuple[str, ...]) -> Stage:
    """Create the run directory, the repository and the identities (no process started yet)."""
    templates = load_templates(packaged_template_texts())
    template = templates.get(template_name)
    if template is None:
        raise MissingPiece(f"no pipeline template {template_name!r}; known: {sorted(templates)}")
    run_id = uuid.uuid4().hex[:8]
    repo = f"demo/login-service-{run_id}"
    sample = SampleRepo.create(root / "git")
    capabilities = agent_capabilities(template)
    identities = issue_identities(
        root / "identities",
        repo=repo,
        capabilities=capabilities,
        reviewers=reviewers,
        now_ms=now_ms(),
    )
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    base_env = {
        "SDLCFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SDLCFLOW_DATA_DIR": str(data_dir),
        "SDLCFLOW_TRUSTED_ISSUERS": str(identities.trusted_issuers),
        REPOS_ENV: json.dumps({repo: str(sample.remote)}),
    }
    return Stage(
        run_id=run_id,
        repo=repo,
        root=root,
        data_dir=data_dir,
        bootstrap=bootstrap,
        app_id=f"sdlcflow-demo-{run_id}",
        template=template,
        sample=sample,
        identities=identities,
        services=Services(root / "logs", base_env),
    )


def seed_production(stage: Stage) -> None:
    """Before the incident, staging and prod both run main (so a rollback has somewhere to go)."""
    store = ArtifactStore(stage.data_dir / "artifacts")
    workspace = Workspace.at(stage.root / "seed", store=store)
    releases = Releases(store)
    for env in ("staging", "prod"):
        request = DeployInput(
            remote=stage.remote,
            sha=stage.sample.main,
            env=env,
            by="demo-setup",
            at=now_ms(),
            why="what production ran before the incident",
        )
        result = deploy(request, workspace, releases)
        if not result.live:
            raise MissingPiece(
                f"seeding {env} with main {stage.sample.main} failed its smoke check; the sample "
                f"service is broken (smoke log: {result.smoke_log})"
            )


def start_coordinator(stage: Stage) -> Service:
    """The faust coordinator in its own consumer group, positioned at the inputs' current end."""
    start_group_at_end(stage.bootstrap, stage.app_id, INPUT_TOPICS)
    args = [
        "run",
        "processors",
        "--store",
        "memory",
        "--app-id",
        stage.app_id,
        "--data-dir",
        str(stage.root / "processors"),
        "--trusted-issuers",
        str(stage.identities.trusted_issuers),
        "--tick-interval-ms",
        "250",
        "--repos",
        stage.repo,  # decide only this run's repository; the broker is shared
        "--loglevel",
        "info",  # it goes to the log file a failed step names
    ]
    return stage.services.start_cli("coordinator", args)


def start_agents(stage: Stage) -> None:
    """One `sdlcflow run agent` per capability the template needs; record what is missing."""
    bound = reference_agents()
    for capability, holder in stage.identities.agents.items():
        if capability not in bound:
            known = ", ".join(sorted(bound)) or "none"
            stage.missing[f"agent:{capability}"] = (
                f"{BINDINGS_MODULE}.REFERENCE_AGENTS has no agent for {capability!r} "
                f"(bound: {known})"
            )
            continue
        group = f"{stage.app_id}-{capability}"
        start_group_at_end(stage.bootstrap, group, [task_topic(capability)])
        # serve only this run's repository: other runs' offers on the shared task topic are not ours
        args = ["run", "agent", capability, "--group", group, "--repos", stage.repo, "--verbose"]
        stage.agents[capability] = stage.services.start_cli(
            f"agent-{capability}", args, holder.agent_env()
        )


def start_audit_sink(stage: Stage) -> None:
    if not has_audit_commands():
        stage.missing["audit"] = (
            f"{AUDIT_COMMANDS_MODULE} (click group `audit` with `sink`, `change`, `trace`, and "
            "command `report`) is not built"
        )
        return
    group = f"{stage.app_id}-audit"
    start_group_at_end(stage.bootstrap, group, audited_topics(stage.bootstrap))
    stage.audit_sink = stage.services.start_cli("audit-sink", ["audit", "sink", "--group", group])


def audited_topics(bootstrap: str, timeout_s: float = 30.0) -> list[str]:
    """The sdlc.* topics the sink reads that exist now: the run's sink starts at their end, so it
    stores this run's events without first replaying every earlier run's backlog."""
    try:
        names = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise DemoError(f"cannot list the topics on {bootstrap}: {exc}") from exc
    return sorted(name for name in names if is_audited(name))


def forget_run(stage: Stage, timeout_s: float = 30.0) -> list[str]:
    """Delete the run's own Kafka topics (its coordinator's changelogs) and consumer groups,
    so reruns do not pile them up on the broker; returns what could not be deleted."""
    return forget_on_broker(stage.bootstrap, app_ids=[stage.app_id], timeout_s=timeout_s)
