"""Percentile maths: nearest-rank, so every reported latency is one that really happened."""

import pytest

from phoenix_bench.stats import median_summary, percentile, ratio, summarize_ms


def test_nearest_rank_percentiles_of_1_to_100():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1


def test_percentile_is_a_sample_not_an_interpolation():
    assert percentile([1.0, 10.0], 50) == 1.0
    assert percentile([1.0, 10.0], 51) == 10.0


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_converts_seconds_to_ms_and_orders_percentiles():
    s = summarize_ms([0.003, 0.001, 0.002, 0.010])
    assert s is not None
    assert s.count == 4
    assert s.p50_ms == pytest.approx(2.0)
    assert s.p99_ms == pytest.approx(10.0)
    assert s.max_ms == pytest.approx(10.0)
    assert s.mean_ms == pytest.approx(4.0)
    assert summarize_ms([]) is None


def test_median_summary_over_runs_ignores_missing_runs():
    runs = [
        {"p50_ms": 1.0, "p99_ms": 9.0},
        None,
        {"p50_ms": 3.0, "p99_ms": 5.0},
        {"p50_ms": 2.0, "p99_ms": 7.0},
    ]
    assert median_summary(runs) == {"p50_ms": 2.0, "p99_ms": 7.0}
    assert median_summary([None]) is None


def test_ratio_handles_missing_and_zero():
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 4.0) is None
    assert ratio(1.0, 0.0) is None
