"""The Zipf user mix: skewed towards low ranks, deterministic per seed, within bounds."""

from collections import Counter

import pytest

from phoenix_bench.zipf import ZipfSampler, expected_hit_ratio


def test_probabilities_sum_to_one_and_follow_the_power_law():
    z = ZipfSampler(1000, s=1.0)
    assert sum(z.probability(k) for k in range(1000)) == pytest.approx(1.0)
    assert z.probability(0) / z.probability(1) == pytest.approx(2.0)
    assert z.probability(0) / z.probability(9) == pytest.approx(10.0)


def test_samples_match_the_distribution():
    z = ZipfSampler(100, s=1.1, seed=3)
    counts = Counter(z.samples(50_000))
    assert all(0 <= k < 100 for k in counts)
    assert counts[0] / 50_000 == pytest.approx(z.probability(0), rel=0.05)
    assert counts[0] > counts[1] > counts[9] > counts[99]


def test_same_seed_same_sequence_other_seed_differs():
    assert ZipfSampler(500, seed=1).samples(100) == ZipfSampler(500, seed=1).samples(100)
    assert ZipfSampler(500, seed=1).samples(100) != ZipfSampler(500, seed=2).samples(100)


def test_s_zero_is_uniform():
    z = ZipfSampler(10, s=0.0)
    assert z.probability(0) == pytest.approx(z.probability(9))


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        ZipfSampler(0)
    with pytest.raises(ValueError):
        ZipfSampler(10, s=-1)


def test_expected_hit_ratio_grows_with_sequence_length():
    z = ZipfSampler(10_000, s=1.1)
    short, long = expected_hit_ratio(z, 100), expected_hit_ratio(z, 100_000)
    assert 0.0 < short < long < 1.0
    # a single-user "mix": everything after the first request hits
    assert expected_hit_ratio(ZipfSampler(1), 100) == pytest.approx(0.99)


def test_ttl_steady_state_ceiling():
    from phoenix_bench.runner import ttl_steady_state_ratio

    z = ZipfSampler(10_000, s=1.1)
    low, high = ttl_steady_state_ratio(z, 1.0, 300), ttl_steady_state_ratio(z, 1000.0, 300)
    assert 0.0 < low < high < 1.0
    # a huge request window: every user is always cached
    assert ttl_steady_state_ratio(z, 1e9, 300) == pytest.approx(1.0)
    assert ttl_steady_state_ratio(z, 0.0, 300) is None
