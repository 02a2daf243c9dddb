"""A Zipf-distributed sampler of user ranks: a few users log in very often, most rarely.

Real login traffic is skewed like this; the cache hit ratio the seed promises only means
something under such a mix. Rank 0 is the most popular. Sampling inverts the cumulative
distribution with a binary search, so drawing is O(log n) after an O(n) set-up.
"""

from __future__ import annotations

import bisect
import itertools
import random


class ZipfSampler:
    """Draw ranks in [0, n) with P(rank k) proportional to 1 / (k + 1) ** s."""

    def __init__(self, n: int, s: float = 1.1, seed: int = 0) -> None:
        if n < 1:
            raise ValueError("ZipfSampler needs n >= 1")
        if s < 0:
            raise ValueError("ZipfSampler needs s >= 0")
        self.n = n
        self.s = s
        weights = ((k + 1) ** -s for k in range(n))
        self._cumulative = list(itertools.accumulate(weights))
        self._total = self._cumulative[-1]
        self._rng = random.Random(seed)

    def probability(self, rank: int) -> float:
        """Exact probability of `rank` under this distribution."""
        return (rank + 1) ** -self.s / self._total

    def sample(self) -> int:
        u = self._rng.random() * self._total
        return min(bisect.bisect_right(self._cumulative, u), self.n - 1)

    def samples(self, count: int) -> list[int]:
        return [self.sample() for _ in range(count)]


def expected_hit_ratio(sampler: ZipfSampler, sequence_len: int) -> float:
    """Hit ratio of an unbounded cache without expiry over a sequence of this length.

    Every first request of a user misses; everything after hits. Used to put the measured ratio
    next to what a perfect cache could have reached in the same number of requests.
    """
    expected_distinct = sum(1.0 - (1.0 - sampler.probability(k)) ** sequence_len for k in range(sampler.n))
    return 1.0 - expected_distinct / sequence_len if sequence_len else 0.0
