"""`sdlcflow console`: serve the reviewer console for the local reviewer."""

from __future__ import annotations

from pathlib import Path

import click

from sdlcflow.approvals.commands import build_service
from sdlcflow.approvals.decisions import Reviewer
from sdlcflow.errors import SdlcflowError
from sdlcflow.streams.topics import AGENT_EVENTS, COORDINATOR


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option(
    "--reviewer-key",
    envvar="SDLCFLOW_REVIEWER_KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The local reviewer's Ed25519 key file; it never leaves this machine "
    "[env SDLCFLOW_REVIEWER_KEY]. Without it the console is read-only.",
)
@click.option(
    "--reviewer-credential",
    envvar="SDLCFLOW_REVIEWER_CREDENTIAL",
    default=None,
    help="The reviewer's credential: a file holding it or the token "
    "[env SDLCFLOW_REVIEWER_CREDENTIAL].",
)
@click.option(
    "--bootstrap",
    envvar="SDLCFLOW_KAFKA_BOOTSTRAP",
    default=None,
    help="Kafka bootstrap servers [env SDLCFLOW_KAFKA_BOOTSTRAP].",
)
@click.option(
    "--db",
    "db_path",
    envvar="SDLCFLOW_APPROVALS_DB",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Approvals read model file [env SDLCFLOW_APPROVALS_DB].",
)
@click.option(
    "--evidence-dir",
    envvar="SDLCFLOW_EVIDENCE_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Evidence store root [env SDLCFLOW_EVIDENCE_DIR].",
)
@click.option(
    "--topic",
    envvar="SDLCFLOW_COORDINATOR_TOPIC",
    default=COORDINATOR,
    show_default=True,
    help="The coordinator's decisions topic [env SDLCFLOW_COORDINATOR_TOPIC].",
)
@click.option(
    "--agent-events-topic",
    envvar="SDLCFLOW_AGENT_EVENTS_TOPIC",
    default=AGENT_EVENTS,
    show_default=True,
    help="Where signed decisions are sent [env SDLCFLOW_AGENT_EVENTS_TOPIC].",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds a decision waits for the coordinator's verdict before the page shows it.",
)
def console(
    host: str,
    port: int,
    reviewer_key: Path | None,
    reviewer_credential: str | None,
    bootstrap: str | None,
    db_path: Path | None,
    evidence_dir: Path | None,
    topic: str,
    agent_events_topic: str,
    wait: float,
) -> None:
    """Serve the reviewer console: pending approvals, evidence, approve/reject forms."""
    import uvicorn

    from sdlcflow.console.app import ConsoleConfig, create_app

    try:
        reviewer = (
            Reviewer.load(reviewer_key, reviewer_credential)
            if reviewer_key or reviewer_credential
            else None
        )
    except SdlcflowError as exc:
        raise click.ClickException(str(exc)) from None
    service = build_service(bootstrap, db_path, evidence_dir, topic, agent_events_topic)
    app = create_app(ConsoleConfig(service, reviewer, decision_wait_s=wait))
    who = f"signing as {reviewer.actor_id}" if reviewer else "read-only"
    click.echo(f"reviewer console on http://{host}:{port}/ ({who}); Ctrl-C to stop", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
