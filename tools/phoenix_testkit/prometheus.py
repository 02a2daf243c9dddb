"""Samples out of a Prometheus text exposition, read with `prometheus_client`'s parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named `name` (as exposed, e.g. `..._total`) whose labels include `labels`;
    0.0 when there are none."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def labelled_values(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named `name` with its labels, in exposition order."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
