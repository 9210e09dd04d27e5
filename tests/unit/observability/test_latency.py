"""A long-running worker's latency record stays bounded while its histogram stays cumulative."""

from __future__ import annotations

from sdlcflow.observability.latency import LatencySamples


class TestLatencySamples:
    """Buckets count every sample since start; only the latest samples are kept."""

    def test_memory_is_bounded_but_the_histogram_counts_every_sample(self) -> None:
        samples = LatencySamples(bounds_s=(0.01, 0.1), keep=3)
        samples.extend(float(ms) for ms in range(1, 201))  # 1..200 ms
        assert len(samples) == 200
        assert list(samples) == [198.0, 199.0, 200.0]
        assert samples.cumulative() == [("0.01", 10.0), ("0.1", 100.0), ("+Inf", 200.0)]
        assert abs(samples.sum_s - sum(range(1, 201)) / 1000) < 1e-9

    def test_a_phase_reads_the_samples_observed_after_its_mark(self) -> None:
        samples = LatencySamples(keep=10)
        samples.extend([5.0, 6.0])
        mark = len(samples)
        samples.extend([7.0, 8.0, 9.0])
        assert samples.since(mark) == [7.0, 8.0, 9.0]
        assert samples.since(len(samples)) == []

    def test_a_phase_longer_than_what_is_kept_reads_the_latest_samples(self) -> None:
        samples = LatencySamples(keep=2)
        samples.extend([1.0, 2.0, 3.0, 4.0])
        assert samples.since(0) == [3.0, 4.0]
