"""What does watching cost? The coordinator's per-event observability work, side by side.

Plays core_bench's busy repository through the pure core, keeping each input's decisions, then
times, alternating in one run so load moves them alike:
- the core alone (`handle` per input): the yardstick the extra work is a fraction of;
- decision metrics: `DecisionMeter.updates` + `apply` per batch of 100 inputs' decisions (what a
  processors worker adds per batch);
- spans off: `handling` (log ids bound + `event_span`) per input, tracing off (the default);
- spans on: the same, recording spans to the SDK's in-memory exporter.

    .venv/bin/python benchmarks/observability_bench.py [--quick]

Writes benchmarks/results/observability_bench.json with a machine description.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).parent))
from core_bench import CONFIG, build_log, calibration_us

from sdlcflow.bench.machine import describe_machine
from sdlcflow.core.decider import handle
from sdlcflow.core.events import Event
from sdlcflow.core.state import RepoState
from sdlcflow.observability import spans
from sdlcflow.observability.decisions import DecisionMeter, apply

RESULTS = Path(__file__).parent / "results" / "observability_bench.json"
BATCH = 100  # inputs per batch (the processors take up to SDLCFLOW_BATCH_MAX=500)


def decisions_of(inputs: list[Event]) -> list[list[Event]]:
    state, out = RepoState(), []
    for event in inputs:
        state, decided = handle(state, event, CONFIG)
        out.append(list(decided))
    return out


def core(inputs: list[Event], _decisions: list[list[Event]]) -> None:
    state = RepoState()
    for event in inputs:
        state, _ = handle(state, event, CONFIG)


def metered(_inputs: list[Event], decisions: list[list[Event]]) -> None:
    """Per batch of BATCH inputs, as the processors' shell calls it."""
    meter = DecisionMeter()
    for start in range(0, len(decisions), BATCH):
        batch = [d for decided in decisions[start : start + BATCH] for d in decided]
        apply(meter.updates(batch))


def spanned(inputs: list[Event], _decisions: list[list[Event]]) -> None:
    for event in inputs:
        with spans.handling("coordinator", event.envelope, None):
            pass


def timed(run: Callable[[list[Event], list[list[Event]]], None], *args: Any) -> float:
    started = time.process_time()
    run(*args)
    return time.process_time() - started


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    changes, concurrency, repeats = (60, 10, 3) if quick else (300, 25, 5)
    inputs, _mix = build_log(changes, concurrency)
    decisions = decisions_of(inputs)
    total_decisions = sum(len(d) for d in decisions)
    exporter = InMemorySpanExporter()
    samples: dict[str, list[float]] = {"core": [], "metrics": [], "spans_off": [], "spans_on": []}
    yardsticks = []
    for _ in range(repeats):
        yardsticks.append(calibration_us())
        samples["core"].append(timed(core, inputs, decisions))
        samples["metrics"].append(timed(metered, inputs, decisions))
        spans.shutdown()
        samples["spans_off"].append(timed(spanned, inputs, decisions))
        spans.configure("bench", exporter)
        samples["spans_on"].append(timed(spanned, inputs, decisions))
        exporter.clear()
        spans.shutdown()
    median = {name: statistics.median(values) for name, values in samples.items()}
    per_input_us = {name: seconds / len(inputs) * 1e6 for name, seconds in median.items()}
    figures = {
        "inputs": len(inputs),
        "decisions": total_decisions,
        "repeats": repeats,
        "cpu_seconds_median": median,
        "us_per_input_median": per_input_us,
        "us_per_decision_metrics": median["metrics"] / total_decisions * 1e6,
        "fraction_of_core": {
            name: median[name] / median["core"] for name in ("metrics", "spans_off", "spans_on")
        },
        "yardstick_us_median": statistics.median(yardsticks),
        "machine": describe_machine(),
    }
    print(f"{len(inputs)} inputs, {total_decisions} decisions, median of {repeats} (CPU time)")
    for name, value in per_input_us.items():
        share = "" if name == "core" else f"  ({figures['fraction_of_core'][name]:.1%} of core)"
        print(f"  {name:10s} {value:7.2f} us/input{share}")
    print(f"  metrics    {figures['us_per_decision_metrics']:7.2f} us/decision")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
