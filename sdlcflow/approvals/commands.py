"""`sdlcflow approvals list|show`, `sdlcflow approve`, `sdlcflow reject`.

Every command first catches the local read model up with `sdlc.coordinator`, so what it shows
or decides is what the coordinator had decided when the command started.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from sdlcflow.approvals.decisions import Reviewer, outcome_text
from sdlcflow.approvals.evidence import (
    EvidenceError,
    EvidenceStore,
    default_evidence_root,
    policy_summary,
)
from sdlcflow.approvals.service import ApprovalsService, Sent
from sdlcflow.approvals.store import Approval, ApprovalStore
from sdlcflow.errors import SdlcflowError
from sdlcflow.settings import Settings
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR

F = TypeVar("F", bound=Callable[..., Any])


def _common(command: F) -> F:
    options = [
        click.option(
            "--bootstrap",
            envvar="SDLCFLOW_KAFKA_BOOTSTRAP",
            default=None,
            help="Kafka bootstrap servers [env SDLCFLOW_KAFKA_BOOTSTRAP; default 127.0.0.1:9092].",
        ),
        click.option(
            "--db",
            "db_path",
            envvar="SDLCFLOW_APPROVALS_DB",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Approvals read model file [env SDLCFLOW_APPROVALS_DB; default "
            "<data dir>/approvals.sqlite].",
        ),
        click.option(
            "--evidence-dir",
            envvar="SDLCFLOW_EVIDENCE_DIR",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Evidence store root [env SDLCFLOW_EVIDENCE_DIR; default <data dir>/artifacts].",
        ),
        click.option(
            "--topic",
            envvar="SDLCFLOW_COORDINATOR_TOPIC",
            default=COORDINATOR,
            show_default=True,
            help="The coordinator's decisions topic [env SDLCFLOW_COORDINATOR_TOPIC].",
        ),
        click.option(
            "--agent-events-topic",
            envvar="SDLCFLOW_AGENT_EVENTS_TOPIC",
            default=AGENT_EVENTS,
            show_default=True,
            help="Where signed decisions are sent [env SDLCFLOW_AGENT_EVENTS_TOPIC].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_service(
    bootstrap: str | None,
    db_path: Path | None,
    evidence_dir: Path | None,
    topic: str,
    agent_events_topic: str = AGENT_EVENTS,
) -> ApprovalsService:
    settings = Settings.from_env()
    store = ApprovalStore(db_path or settings.data_dir / "approvals.sqlite")
    evidence = EvidenceStore.at(evidence_dir or default_evidence_root(settings.data_dir))
    return ApprovalsService(
        store,
        evidence,
        bootstrap or settings.kafka_bootstrap,
        topic=topic,
        decisions_topic=agent_events_topic,
    )


def _errors(command: F) -> F:
    """Turn our errors into one clear line and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SdlcflowError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group()
def approvals() -> None:
    """Approval tasks waiting for human reviewers."""


@approvals.command("list")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per approval).")
@click.option("--repo", default=None, help="Only approvals of this repository.")
@_errors
def list_approvals(
    bootstrap: str | None,
    db_path: Path | None,
    evidence_dir: Path | None,
    topic: str,
    agent_events_topic: str,
    as_json: bool,
    repo: str | None,
) -> None:
    """List the approvals waiting for a decision, oldest first."""
    service = build_service(bootstrap, db_path, evidence_dir, topic, agent_events_topic)
    service.refresh()
    pending = service.store.pending(repo)
    if as_json:
        click.echo(json.dumps([a.to_json() for a in pending], indent=2))
        return
    if not pending:
        click.echo("no approvals are waiting")
        return
    table = Table("id", "repo", "head", "approvals", "escalated to", "evidence")
    for approval in pending:
        table.add_row(
            approval.id,
            approval.repo,
            approval.state.head_sha[:12],
            f"{len(approval.approvers)}/{approval.required}",
            approval.escalated_to or "-",
            approval.evidence_digest[:19],
        )
    Console().print(table)


@approvals.command("show")
@click.argument("approval_id")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the approval and its bundle as JSON.")
@_errors
def show_approval(
    approval_id: str,
    bootstrap: str | None,
    db_path: Path | None,
    evidence_dir: Path | None,
    topic: str,
    agent_events_topic: str,
    as_json: bool,
) -> None:
    """Show one approval with its evidence bundle (diff, tests, environment, policy, replay)."""
    service = build_service(bootstrap, db_path, evidence_dir, topic, agent_events_topic)
    service.refresh()
    approval = service.approval(approval_id)
    bundle: dict[str, Any] | None = None
    problem = ""
    try:
        bundle = service.bundle(approval).model_dump(mode="json")
    except EvidenceError as exc:
        problem = str(exc)
    if as_json:
        out = {"approval": approval.to_json(), "evidence": bundle, "evidence_error": problem}
        click.echo(json.dumps(out, indent=2))
        return
    _print_approval(approval, bundle, problem)


def _print_approval(approval: Approval, bundle: dict[str, Any] | None, problem: str) -> None:
    console = Console(highlight=False)
    console.print(f"[bold]{approval.id}[/] ({approval.status.value}) in {approval.repo}")
    console.print(f"head {approval.state.head_sha}  base {approval.state.base_sha}")
    console.print(
        f"approvals {len(approval.approvers)}/{approval.required}: "
        f"{', '.join(approval.approvers) or 'none yet'}"
    )
    console.print(f"evidence {approval.evidence_digest}")
    if approval.escalated_to:
        console.print(
            f"escalated to reviewer group {approval.escalated_to} (timeout passed); its "
            f"members may approve",
            markup=False,
        )
    if approval.reason:
        console.print(f"reason: {approval.reason}", markup=False)
    if bundle is None:
        console.print(f"[red]evidence unavailable:[/] {problem}")
        return
    console.print(f"risk score {bundle['risk_score']}/100", markup=False)
    policy = policy_summary(bundle["policy_decision"])
    console.print(f"policy: {policy.decision or '-'}", markup=False)
    for reason in policy.reasons:
        console.print(f"  - {reason}", markup=False)
    for result in bundle["test_results"]:
        console.print(f"test: {json.dumps(result, sort_keys=True)}", markup=False)
    console.print(f"replay: {bundle['replay_command']}", markup=False)
    console.print(bundle["diff"], markup=False)


_KEY = click.option(
    "--key",
    "key_file",
    envvar="SDLCFLOW_REVIEWER_KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Your Ed25519 private key file [env SDLCFLOW_REVIEWER_KEY].",
)
_CREDENTIAL = click.option(
    "--credential",
    default=None,
    help="Your reviewer credential: a file holding it or the token itself "
    "[env SDLCFLOW_REVIEWER_CREDENTIAL].",
)
_WAIT = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the coordinator's verdict.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _report(sent: Sent, as_json: bool) -> None:
    outcome = sent.outcome
    if as_json:
        click.echo(
            json.dumps(
                {
                    "event_id": sent.event.event_id,
                    "type": sent.event.type,
                    "decided": outcome is not None,
                    "accepted": outcome.accepted if outcome else None,
                    "reason": outcome.type if outcome else None,
                    "detail": outcome.detail if outcome else None,
                }
            )
        )
    else:
        click.echo(f"{sent.event.type} {sent.event.event_id}: {outcome_text(outcome)}")
    if outcome is not None and not outcome.accepted:
        raise click.exceptions.Exit(2)


@click.command()
@click.argument("approval_id")
@_KEY
@_CREDENTIAL
@click.option("--comment", default="", help="Why you approve (kept with the signed decision).")
@_WAIT
@_JSON
@_common
@_errors
def approve(
    approval_id: str,
    key_file: Path | None,
    credential: str | None,
    comment: str,
    wait: float,
    as_json: bool,
    bootstrap: str | None,
    db_path: Path | None,
    evidence_dir: Path | None,
    topic: str,
    agent_events_topic: str,
) -> None:
    """Sign the evidence of APPROVAL_ID and approve it; exit 2 if the coordinator rejects it."""
    reviewer = Reviewer.load(key_file, credential)
    service = build_service(bootstrap, db_path, evidence_dir, topic, agent_events_topic)
    service.refresh()
    sent = service.decide(approval_id, reviewer, approve=True, comment=comment, wait_s=wait)
    _report(sent, as_json)


@click.command()
@click.argument("approval_id")
@_KEY
@_CREDENTIAL
@click.option("--reason", required=True, help="Why you reject: the author reads this.")
@_WAIT
@_JSON
@_common
@_errors
def reject(
    approval_id: str,
    key_file: Path | None,
    credential: str | None,
    reason: str,
    wait: float,
    as_json: bool,
    bootstrap: str | None,
    db_path: Path | None,
    evidence_dir: Path | None,
    topic: str,
    agent_events_topic: str,
) -> None:
    """Sign the evidence of APPROVAL_ID and reject it (the change is blocked)."""
    if not reason.strip():
        raise click.BadParameter("give a reason; the author needs to know what to fix")
    reviewer = Reviewer.load(key_file, credential)
    service = build_service(bootstrap, db_path, evidence_dir, topic, agent_events_topic)
    service.refresh()
    sent = service.decide(approval_id, reviewer, approve=False, comment=reason, wait_s=wait)
    _report(sent, as_json)
