"""Observability of one long-running service: the shared CLI options and their start-up.

`run processors`, `run agent` and `audit sink` take the same options (each with an environment
fallback): `--metrics-port` serves /metrics and watches the service's consumer lag,
`--log-format json` and `--log-sample-rate` shape the logs; SDLCFLOW_TRACING turns spans on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from sdlcflow.errors import SdlcflowError
from sdlcflow.observability import logs, metrics, spans
from sdlcflow.observability.lag import LagWatcher

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def options(function: F) -> F:
    """Add --metrics-port, --log-format and --log-sample-rate to a click command."""
    decorators = (
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            default=None,
            envvar="SDLCFLOW_METRICS_PORT",
            help="Serve Prometheus metrics on http://0.0.0.0:PORT/metrics (0: any free port).",
        ),
        click.option(
            "--log-format",
            type=click.Choice([f.value for f in logs.LogFormat]),
            default=logs.LogFormat.TEXT.value,
            show_default=True,
            envvar="SDLCFLOW_LOG_FORMAT",
            help="json: one object per line, with trace/change/task/agent ids.",
        ),
        click.option(
            "--log-sample-rate",
            type=click.FloatRange(0.0, 1.0),
            default=1.0,
            show_default=True,
            envvar="SDLCFLOW_LOG_SAMPLE_RATE",
            help="Fraction of traces whose success logs are kept (failures are always kept).",
        ),
    )
    for decorate in reversed(decorators):
        function = decorate(function)
    return function


@contextmanager
def observed(
    service: str, *, metrics_port: int | None, bootstrap: str, groups: Sequence[str]
) -> Iterator[metrics.MetricsServer | None]:
    """Tracing per SDLCFLOW_TRACING; with a port, /metrics and a consumer-lag watcher."""
    server = watcher = None
    try:
        try:
            spans.configure(service)
            if metrics_port is not None:
                server = metrics.serve(metrics_port)
        except SdlcflowError as exc:  # a bad setting: say so, without a traceback
            raise click.ClickException(str(exc)) from exc
        if server is not None:
            watcher = LagWatcher(bootstrap, groups).start()
            log.info("%s metrics on http://0.0.0.0:%d/metrics", service, server.port)
        yield server
    finally:
        if watcher is not None:
            watcher.close()
        if server is not None:
            server.close()
        spans.shutdown()
