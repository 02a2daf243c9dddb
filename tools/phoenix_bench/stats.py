"""Percentiles and summaries of latency samples, kept free of I/O so they can be unit-tested.

Percentiles are phoenix_testkit's nearest-rank ones (shared with the reliability tests).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from phoenix_testkit.stats import percentile

__all__ = [
    "PERCENTILES",
    "LatencySummary",
    "median_of",
    "median_summary",
    "percentile",
    "ratio",
    "summarize_ms",
]

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True)
class LatencySummary:
    """Latency distribution of one measurement, in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize_ms(samples_s: Iterable[float]) -> LatencySummary | None:
    """Summary in milliseconds of latencies given in seconds; None when there are none."""
    values = sorted(v * 1000.0 for v in samples_s)
    if not values:
        return None
    p50, p90, p95, p99, p999 = (percentile(values, p) for p in PERCENTILES)
    return LatencySummary(
        count=len(values),
        mean_ms=statistics.fmean(values),
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        p999_ms=p999,
        max_ms=values[-1],
    )


def median_of(values: Iterable[float | None]) -> float | None:
    """Median over runs, ignoring runs where the value could not be measured."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median_summary(summaries: Sequence[Mapping[str, float] | None]) -> dict[str, float] | None:
    """Field-by-field median of several runs' summaries (the published number of each field)."""
    present = [s for s in summaries if s]
    if not present:
        return None
    keys = present[0].keys()
    return {k: statistics.median(s[k] for s in present) for k in keys}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
