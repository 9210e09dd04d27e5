"""`sdlcflow replay`: rebuild the coordinator's state from its decisions log and compare."""

from __future__ import annotations

import json
import sys

import click

from sdlcflow.processors.config import ProcessorConfig


@click.command("replay")
@click.option(
    "--from-beginning/--no-from-beginning",
    default=True,
    show_default=True,
    help="Fold sdlc.coordinator from its first record (the only mode: state is a fold of it).",
)
@click.option("--verify", is_flag=True, help="Compare with the live table; exit 1 on a difference.")
@click.option(
    "--app-id",
    default=None,
    envvar="SDLCFLOW_PROCESSORS_APP_ID",
    help="The coordinator whose table to compare with (its faust app id).",
)
@click.option(
    "--repos",
    default=None,
    envvar="SDLCFLOW_PROCESSORS_REPOS",
    help="Comma-separated glob patterns of the repositories to check (default: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def replay(
    from_beginning: bool, verify: bool, app_id: str | None, repos: str | None, as_json: bool
) -> None:
    """Replay sdlc.coordinator through the core and (with --verify) diff against the table."""
    from sdlcflow.processors import replay as replaying

    if not from_beginning:
        raise click.UsageError("state is a fold of the whole log: replay --from-beginning")
    config = ProcessorConfig.from_env().with_options(app_id=app_id)
    patterns = tuple(p for p in (repos or "").split(",") if p)
    changelog = config.changelog_topic(config.state_table)
    if verify:
        report = replaying.verify(config.bootstrap, changelog, patterns)
    else:
        report = replaying.ReplayReport()
        report.repos = len(replaying.fold_coordinator(config.bootstrap, patterns, report))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo("\n".join(report.lines(changelog, verify)))
    if verify and report.differences:
        sys.exit(1)
