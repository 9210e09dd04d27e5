"""Percentiles, rates and the limit/baseline ratios the suite prints."""

from __future__ import annotations

import math

import pytest

from sdlcflow.bench.load import arrivals
from sdlcflow.bench.record import RunRecord, figures
from sdlcflow.bench.stats import compare, percentile, rate, ratio, summarize


class TestPercentile:
    """Nearest-rank percentiles report observed values."""

    def test_nearest_rank_of_one_to_a_hundred(self) -> None:
        values = list(range(100, 0, -1))
        assert percentile(values, 50) == 50
        assert percentile(values, 95) == 95
        assert percentile(values, 99) == 99
        assert percentile(values, 100) == 100
        assert percentile(values, 0) == 1

    def test_p99_of_few_samples_is_the_worst(self) -> None:
        assert percentile([3.0, 1.0, 2.0], 99) == 3.0

    def test_no_values_give_nan_and_bad_q_is_refused(self) -> None:
        assert math.isnan(percentile([], 50))
        with pytest.raises(ValueError, match=r"outside 0\.\.100"):
            percentile([1.0], 101)

    def test_summary_rounds_and_maps_nan_to_none(self) -> None:
        assert summarize([1.04, 2.0, 3.0]).to_json() == {
            "count": 3, "p50": 2.0, "p95": 3.0, "p99": 3.0, "max": 3.0,
        }  # fmt: skip
        assert summarize([]).to_json()["p99"] is None


class TestRatios:
    """Throughput against the limit and the baseline; p99 as multiples."""

    def test_rate_and_ratio_guard_against_zero(self) -> None:
        assert rate(10, 2.0) == 5.0
        assert rate(10, 0.0) == 0.0
        assert ratio(5.0, 0.0) is None
        assert ratio(math.nan, 1.0) is None

    def test_comparison_of_sdlcflow_with_limit_and_baseline(self) -> None:
        result = compare(
            sdlcflow_per_s=300.0, limit_per_s=1000.0, baseline_per_s=150.0,
            sdlcflow_p99=50.0, limit_p99=5.0, baseline_p99=100.0,
        )  # fmt: skip
        assert result.to_json() == {
            "throughput_fraction_of_limit": 0.3,
            "throughput_multiple_of_baseline": 2.0,
            "p99_multiple_of_limit": 10.0,
            "p99_multiple_of_baseline": 0.5,
        }


class TestArrivals:
    """A fixed rate spaces submissions evenly over the period."""

    def test_ten_per_second_for_two_seconds(self) -> None:
        offsets = arrivals(10.0, 2.0)
        assert len(offsets) == 20
        assert offsets[1] - offsets[0] == pytest.approx(0.1)
        assert arrivals(0.0, 5.0) == []


class TestFigures:
    """Figures count measured changes only, from first submit to last outcome."""

    def test_warm_up_changes_are_excluded(self) -> None:
        record = RunRecord()
        record.submitted = {"warm": 0, "a": 1000, "b": 1500}
        record.measured = {"a", "b"}
        record.grants = [("warm", 10), ("a", 1100), ("b", 1600), ("b", 1700)]
        record.denials = ["b"]
        record.completions = [("warm", 20), ("a", 1200), ("b", 1800)]
        record.lease_waits = [("warm", 999), ("a", 10), ("b", 30)]
        record.terminal = {"warm": ("ChangePromoted", 30), "a": ("ChangePromoted", 2000)}
        result = figures(record)
        assert result["finished"] == 1 and result["unfinished"] == 1
        assert result["window_s"] == 1.0
        assert result["lease_grants"] == 3 and result["lease_denials"] == 1
        assert result["lease_contention_rate"] == 0.25
        assert result["tasks_completed"] == 2
        assert result["enqueue_to_lease_ms"]["max"] == 30
        assert result["change_end_to_end_ms"]["p50"] == 1000

    def test_clean_end_to_end_is_per_template_and_leaves_out_detoured_changes(self) -> None:
        record = RunRecord()
        submissions = [("warm", "bench-fan", False), ("fan-1", "bench-fan", True),
                       ("fan-2", "bench-fan", True), ("retried", "bench-fan", True),
                       ("reviewed", "bench-fan", True), ("dead", "bench-chain", True),
                       ("chain", "bench-chain", True), ("open", "bench-fan", True)]  # fmt: skip
        for change, template, measured in submissions:
            record.submit(change, 1000, template, measured=measured)
        for change, took in [("warm", 5), ("fan-1", 60), ("fan-2", 80), ("retried", 900),
                             ("reviewed", 700), ("chain", 40)]:  # fmt: skip
            record.terminal[change] = ("ChangePromoted", 1000 + took)
        record.terminal["dead"] = ("ChangeFailed", 1300)
        record.retries.append("retried")
        record.approvals.append("reviewed")
        record.dead_letters.append("dead")
        clean = figures(record)["clean_change_end_to_end_ms"]
        assert set(clean) == {"bench-fan", "bench-chain"}
        assert clean["bench-fan"]["count"] == 2 and clean["bench-fan"]["max"] == 80
        assert clean["bench-chain"]["count"] == 1 and clean["bench-chain"]["p50"] == 40

    def test_no_measured_outcome_gives_no_rates(self) -> None:
        assert figures(RunRecord()) == {"measured_changes": 0, "finished": 0}
