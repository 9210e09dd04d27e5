"""`sdlcflow run agent <capability|module:object> [--concurrency N]`: serve one or more agents."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

import click

from sdlcflow.agents._decorator import AgentDefinition, definition_of
from sdlcflow.agents._errors import AgentDefinitionError, AgentError
from sdlcflow.agents._worker import Worker
from sdlcflow.observability import logs
from sdlcflow.observability import service as observability
from sdlcflow.observability.collectors import watch_worker

BINDINGS_MODULE = "sdlcflow.agents.bindings"


def resolve_agents(target: str) -> list[AgentDefinition]:
    """A capability of the reference agents, or `module:object` naming an agent or a list."""
    if ":" not in target:
        bindings = importlib.import_module(BINDINGS_MODULE)
        found = getattr(bindings, "REFERENCE_AGENTS", {}).get(target)
        if found is None:
            known = ", ".join(sorted(getattr(bindings, "REFERENCE_AGENTS", {})))
            raise AgentDefinitionError(
                f"no reference agent for capability {target!r} (known: {known}); for your own "
                "agent pass 'package.module:function'"
            )
        return [definition_of(found)]
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise AgentDefinitionError(f"cannot load {target!r}: {exc}") from exc
    items = obj if isinstance(obj, list | tuple) else [obj]
    return [definition_of(item) for item in items]


@click.command("agent")
@click.argument("target", envvar="SDLCFLOW_AGENT")
@click.option(
    "--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True,
    envvar="SDLCFLOW_AGENT_CONCURRENCY", help="Tasks in flight at once (one repo stays ordered).",
)  # fmt: skip
@click.option(
    "--group", "group_id", default=None, envvar="SDLCFLOW_AGENT_GROUP",
    help="Consumer group (default: derived from the capabilities).",
)  # fmt: skip
@click.option(
    "--bootstrap", default=None, envvar="SDLCFLOW_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers."
)
@click.option(
    "--drain-timeout", type=float, default=30.0, show_default=True,
    envvar="SDLCFLOW_AGENT_DRAIN_TIMEOUT",
    help="Seconds running tasks may finish on SIGTERM before their leases are released.",
)  # fmt: skip
@click.option(
    "--repos", default="", envvar="SDLCFLOW_AGENT_REPOS",
    help="Comma-separated glob patterns of the repositories to serve (default: all).",
)  # fmt: skip
@click.option("--verbose", "-v", is_flag=True, help="Log every lease and result.")
@observability.options
def agent(
    target: str,
    concurrency: int,
    group_id: str | None,
    bootstrap: str | None,
    drain_timeout: float,
    repos: str,
    verbose: bool,
    metrics_port: int | None,
    log_format: str,
    log_sample_rate: float,
) -> None:
    """Run the agent TARGET: a reference capability (lint, test, merge, deploy, ...) or
    `module:object`. Identity comes from SDLCFLOW_AGENT_CREDENTIAL and SDLCFLOW_AGENT_KEY."""
    logs.configure(
        log_format,
        level=logging.INFO if verbose else logging.WARNING,
        success_sample_rate=log_sample_rate,
    )
    try:
        definitions = resolve_agents(target)
        worker = Worker(
            definitions, bootstrap=bootstrap, concurrency=concurrency, group_id=group_id,
            drain_timeout_s=drain_timeout, repos=[p for p in repos.split(",") if p.strip()],
        )  # fmt: skip
        with observability.observed(
            "sdlcflow-agent",
            metrics_port=metrics_port,
            bootstrap=worker.bootstrap,
            groups=[worker.group_id],
        ):
            unwatch = watch_worker(worker)
            try:
                asyncio.run(_serve(worker))
            finally:
                unwatch()
    except AgentError as exc:
        raise click.ClickException(str(exc)) from exc


async def _serve(worker: Worker) -> None:
    async with worker:
        await worker.run()
