"""Pool sizing: what fits the budget at maxReplicas, clamped, or an error with the numbers."""

from __future__ import annotations

import pytest

from phoenix_operator.errors import PoolDoesNotFit
from phoenix_operator.pool_sizing import DetectedBudget, size_pool


def size(**kw):
    args = {"budget": 100, "reserved": 5, "max_replicas": 4, "min_per_pod": 2, "max_per_pod": 20}
    args.update(kw)
    return size_pool(**args)


def test_floor_of_usable_over_max_replicas():
    p = size(budget=100, reserved=5, max_replicas=4)  # 95 // 4 = 23 → clamped to 20
    assert p.per_pod == 20
    p = size(budget=50, reserved=5, max_replicas=4)  # 45 // 4 = 11
    assert p.per_pod == 11
    assert p.per_pod * p.max_replicas <= 50 - 5


def test_never_exceeds_budget_at_max_replicas():
    for budget in range(13, 300, 7):
        for max_replicas in (1, 2, 3, 5, 6):
            try:
                p = size(budget=budget, reserved=5, max_replicas=max_replicas, min_per_pod=2, max_per_pod=50)
            except PoolDoesNotFit:
                assert budget - 5 < 2 * max_replicas
                continue
            assert p.total_at_max <= budget - 5
            assert 2 <= p.per_pod <= 50


def test_clamped_to_max_per_pod():
    assert size(budget=10_000, max_per_pod=30).per_pod == 30


def test_exact_minimum_fits():
    p = size(budget=13, reserved=5, max_replicas=4, min_per_pod=2)  # 8 // 4 = 2
    assert p.per_pod == 2


def test_one_short_of_minimum_is_an_error_with_numbers():
    with pytest.raises(PoolDoesNotFit) as info:
        size(budget=12, reserved=5, max_replicas=4, min_per_pod=2)
    msg = str(info.value)
    assert "12" in msg and "reserved 5" in msg and "needs 8" in msg


def test_budget_below_reserved():
    with pytest.raises(PoolDoesNotFit, match="= -2"):
        size(budget=3, reserved=5)


def test_single_replica_gets_everything_up_to_max():
    assert size(budget=12, reserved=2, max_replicas=1, max_per_pod=100).per_pod == 10


def test_workers_split_the_pod_pool():
    p = size(budget=100, reserved=0, max_replicas=2, max_per_pod=40, workers=3)  # per pod 40 → 13 each
    assert (p.per_pod, p.per_process) == (40, 13)
    assert p.per_process * 3 <= p.per_pod


def test_too_many_workers_for_the_pool():
    with pytest.raises(PoolDoesNotFit, match="worker processes"):
        size(budget=9, reserved=0, max_replicas=4, min_per_pod=2, max_per_pod=2, workers=3)


def test_policy_fixed_opens_the_whole_pool():
    assert size(policy="fixed").min_per_process == size().per_process
    assert size(policy="elastic").min_per_process == 2


def test_detected_budget_subtracts_reserved_and_others():
    d = DetectedBudget(max_connections=100, superuser_reserved=3, held_by_others=17)
    assert d.budget == 80
    assert DetectedBudget(max_connections=10, superuser_reserved=3, held_by_others=20).budget == 0


def test_detected_budget_feeds_sizing():
    d = DetectedBudget(max_connections=100, superuser_reserved=3, held_by_others=17)
    assert size(budget=d.budget, reserved=5, max_replicas=5).per_pod == 15
