"""The suite's picture: enqueue->lease p50/p99 against offered load, per system."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.pyplot as plt

SERIES = (("limit", "round_trip_ms", "bare Kafka round trip (limit)"),
          ("baseline", "enqueue_to_lease_ms", "HTTP + PostgreSQL lease table"),
          ("sdlcflow", "enqueue_to_lease_ms", "sdlcflow"))  # fmt: skip


def plot_latency(report: dict[str, Any], path: Path) -> None:
    """Latency (log scale) against offered tasks/s; the as-fast-as-possible row is left out."""
    rows = [r for r in report["side_by_side"] if r["offered_changes_per_s"] is not None]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for system, key, label in SERIES:
        offered = [r["sdlcflow"].get("offered_tasks_per_s") or 0.0 for r in rows]
        for axis, q in zip(axes, ("p50", "p99"), strict=True):
            values = [r[system].get(key, {}).get(q) for r in rows]
            points = [(x, y) for x, y in zip(offered, values, strict=True) if y is not None]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=label)
    for axis, q in zip(axes, ("p50", "p99"), strict=True):
        axis.set_xlabel("offered load (tasks/s)")
        axis.set_ylabel(f"enqueue -> lease {q} (ms)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    start = report["machine_at_start"]
    end = report.get("machine_at_end", start)
    figure.suptitle(
        f"sdlcflow vs limit vs baseline, same run ({start['cores']} cores shared; 1-min load "
        f"average {start['load_average_1m']:.1f} at start, {end['load_average_1m']:.1f} at end)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
