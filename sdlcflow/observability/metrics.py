"""Prometheus metrics of sdlcflow processes: one registry, the metric definitions, `serve(port)`.

Every metric is defined here, once, with a domain name and its unit in the name (Prometheus
naming: `_seconds`, `_messages`, `_total`), so the alert rules in `infra/prometheus/` and the
README can be checked against one list (`METRIC_NAMES`). Processes expose the registry with
`serve(port)`; what feeds it lives elsewhere: `decisions.py` (the coordinator's decisions),
`lag.py` (consumer lag and dead-letter size), `collectors.py` (agent and audit-sink counters).
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sdlcflow.errors import SdlcflowError

REGISTRY = CollectorRegistry(auto_describe=True)

# Latency buckets (seconds) spanning a no-op agent (ms) to a slow human review (an hour).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
# Policy evaluation runs in-process (regopy): microseconds to a second.
POLICY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Time to repair: seconds (a retry) to a day (a human fix).
MTTR_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)

# --- the coordinator's decisions (processors) -------------------------------------------------
DECISIONS = Counter(
    "sdlcflow_decisions",
    "Decisions the coordinator published, by event type.",
    ["type"],
    registry=REGISTRY,
)
TASKS_COMPLETED = Counter(
    "sdlcflow_tasks_completed",
    "Tasks completed (result accepted), by capability: task throughput.",
    ["capability"],
    registry=REGISTRY,
)
TASK_LATENCY = Histogram(
    "sdlcflow_task_enqueue_to_completion_seconds",
    "From a task's first TaskReady/TaskOffered to its TaskCompleted, by capability.",
    ["capability"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
LEASES = Counter(
    "sdlcflow_leases",
    "Lease decisions by outcome (granted, denied, expired, revoked, released).",
    ["outcome"],
    registry=REGISTRY,
)
LEASE_DENIALS = Counter(
    "sdlcflow_lease_denials",
    "Denied lease requests by reason (ALREADY_LEASED and RESOURCE_BUSY are contention).",
    ["reason"],
    registry=REGISTRY,
)
POLICY_DECISIONS = Counter(
    "sdlcflow_policy_decisions",
    "Policy evaluations recorded by the coordinator, by decision and mode.",
    ["decision", "enforced"],
    registry=REGISTRY,
)
TASKS_FAILED = Counter(
    "sdlcflow_task_failures",
    "Task failures by what followed: retry (RetryScheduled) or dead_letter (TaskDeadLettered).",
    ["outcome"],
    registry=REGISTRY,
)
MTTR = Histogram(
    "sdlcflow_mttr_seconds",
    "Time to repair: a change's first unrepaired task failure to its next task completion.",
    buckets=MTTR_BUCKETS,
    registry=REGISTRY,
)
CHANGES = Counter(
    "sdlcflow_changes",
    "Changes that reached an end, by outcome (promoted, blocked, failed, withdrawn).",
    ["outcome"],
    registry=REGISTRY,
)
CHANGE_LATENCY = Histogram(
    "sdlcflow_change_duration_seconds",
    "From ChangePlanned to the change's end, by outcome.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENTS_HANDLED = Counter(
    "sdlcflow_events_handled",
    "Input records handled, by component (processors, agent, audit).",
    ["component"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "sdlcflow_dead_letters_published",
    "Records this process sent to sdlc.dead-letter (undecodable, refused, failed), by component.",
    ["component"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "sdlcflow_batch_seconds",
    "Time to handle one input batch (decide, write tables, publish), by component.",
    ["component"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

# --- policy evaluation (the process that evaluates: the policy agent) -------------------------
POLICY_EVALUATION = Histogram(
    "sdlcflow_policy_evaluation_seconds",
    "Time to decide one policy input (bundle evaluation, or a cache hit), by cache and outcome.",
    ["cache", "outcome"],
    buckets=POLICY_BUCKETS,
    registry=REGISTRY,
)

# --- Kafka consumption (lag.py) ---------------------------------------------------------------
CONSUMER_LAG = Gauge(
    "sdlcflow_consumer_lag_messages",
    "High watermark minus the group's committed offset, per topic and partition.",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
DEAD_LETTER_SIZE = Gauge(
    "sdlcflow_dead_letter_messages",
    "Records retained on the dead-letter topic (high minus low watermark, all partitions).",
    ["topic"],
    registry=REGISTRY,
)


def metric_names() -> frozenset[str]:
    """Every sample name the registry can expose (`_total`, `_bucket`, ... included)."""
    from sdlcflow.observability import collectors  # noqa: F401  (registers its collectors)

    # the registry's own index of names per collector, built from their descriptions
    names = REGISTRY._collector_to_names
    return frozenset(name for collector in list(names) for name in names[collector])


class MetricsError(SdlcflowError):
    """The metrics endpoint could not be served."""


class MetricsServer:
    """A running /metrics endpoint (a daemon thread); `close()` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def serve(port: int, addr: str = "0.0.0.0") -> MetricsServer:
    """Expose the registry on http://addr:port/metrics (port 0: any free port)."""
    try:
        server, thread = start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError as exc:
        raise MetricsError(
            f"cannot serve metrics on {addr}:{port}: {exc}; pick a free port with --metrics-port"
        ) from exc
    return MetricsServer(server, thread)
