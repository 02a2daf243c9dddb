"""Table 3's floor creates what the operator's first reconcile applies, with nothing that would
tie the children to an owner the control plane never sees (the garbage collector would delete
them mid-measurement)."""

from collections import Counter

import pytest

from phoenix_bench.control_plane_floor import children

pytestmark = pytest.mark.integration  # the reconcile sizes its pool against the real PostgreSQL


def test_the_floor_creates_each_phoenixauths_children_without_owner_references():
    objects = children(2, "floor-ns")
    kinds = Counter(obj["kind"] for _, obj in objects)
    assert kinds["Deployment"] == 4 and kinds["Job"] == 2 and kinds["HorizontalPodAutoscaler"] == 2
    assert {owner for owner, _ in objects} == {"pxa-0", "pxa-1"}
    assert all("ownerReferences" not in obj["metadata"] for _, obj in objects)
    assert all(obj["metadata"]["namespace"] == "floor-ns" for _, obj in objects)
    assert not any(obj["kind"] == "Secret" and obj["metadata"]["name"] == "phoenix-db" for _, obj in objects)


def test_a_kind_left_out_is_not_created():
    objects = children(1, "floor-ns", frozenset({"HorizontalPodAutoscaler"}))
    assert objects and all(obj["kind"] != "HorizontalPodAutoscaler" for _, obj in objects)
