"""Percentiles and the ratios the suite prints: pure arithmetic, unit-tested apart from any run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in [0, 100]); NaN for no values.

    Nearest rank reports a value that was actually observed, so a p99 over 50 samples is the
    worst one rather than an interpolation between the two worst.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """p50/p95/p99/max of one latency series, in the unit it was given."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    def to_json(self, digits: int = 1) -> dict[str, float | int | None]:
        def rounded(value: float) -> float | None:
            return None if math.isnan(value) else round(value, digits)

        return {
            "count": self.count,
            "p50": rounded(self.p50),
            "p95": rounded(self.p95),
            "p99": rounded(self.p99),
            "max": rounded(self.max),
        }


def summarize(values: Sequence[float]) -> Summary:
    return Summary(
        count=len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=max(values) if values else math.nan,
    )


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 when nothing was timed (never a division by zero)."""
    return count / seconds if seconds > 0 else 0.0


def ratio(value: float, reference: float) -> float | None:
    """value / reference, or None when the reference is missing or zero (no ratio exists)."""
    if reference <= 0 or math.isnan(reference) or math.isnan(value):
        return None
    return value / reference


@dataclass(frozen=True)
class Comparison:
    """sdlcflow against the bare-Kafka limit and the PostgreSQL baseline.

    Throughput: fraction of the limit (<= 1 expected) and multiple of the baseline (> 1 means
    sdlcflow is ahead). Latency: p99 as a multiple of the limit's and of the baseline's (< 1
    against the baseline means sdlcflow is faster).
    """

    throughput_fraction_of_limit: float | None
    throughput_multiple_of_baseline: float | None
    p99_multiple_of_limit: float | None
    p99_multiple_of_baseline: float | None

    def to_json(self) -> dict[str, float | None]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {name: rounded(value) for name, value in self.__dict__.items()}


def compare(
    *,
    sdlcflow_per_s: float,
    limit_per_s: float,
    baseline_per_s: float,
    sdlcflow_p99: float,
    limit_p99: float,
    baseline_p99: float,
) -> Comparison:
    return Comparison(
        throughput_fraction_of_limit=ratio(sdlcflow_per_s, limit_per_s),
        throughput_multiple_of_baseline=ratio(sdlcflow_per_s, baseline_per_s),
        p99_multiple_of_limit=ratio(sdlcflow_p99, limit_p99),
        p99_multiple_of_baseline=ratio(sdlcflow_p99, baseline_p99),
    )
