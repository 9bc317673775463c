"""Latency histograms with fixed bucket bounds shared by every histogram of the process.

One ``bisect`` into ``BOUNDS`` and one list increment per observation: recording sits on the
hot path (see ``metrics/__init__``), so there are no label objects and no locks.

Bucket bounds: 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8 per decade from 10 us to 100 s (71
bounds, each at most 1.34x the one before): a percentile read from them is within one bucket
of the truth. Prometheus is given the 1-2.5-5 subset (``COARSE``: exact cumulative counts at
those bounds), which keeps the number of series reasonable.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable

_MANTISSAS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8)


def _make_bounds() -> tuple[tuple[float, ...], tuple[int, ...]]:
    bounds: list[float] = []
    coarse: list[int] = []  # indexes of the 1-2.5-5 bounds
    for e in range(-5, 2):
        for m in _MANTISSAS:
            if m in (1, 2.5, 5):
                coarse.append(len(bounds))
            bounds.append(float(f"{m}e{e}"))
    coarse.append(len(bounds))
    bounds.append(100.0)
    return tuple(bounds), tuple(coarse)


#: Upper bounds (seconds) of the fine buckets; one more bucket holds what is above the last.
BOUNDS, COARSE = _make_bounds()
NBUCKETS = len(BOUNDS) + 1
#: Indexes of the bounds given to Prometheus: 1, 2.5, 5 per decade.
PROM_LATENCY = tuple(i for i in COARSE if 1e-4 <= BOUNDS[i] <= 10)
PROM_FANOUT = tuple(i for i in COARSE if 1e-3 <= BOUNDS[i] <= 100)


class Histogram:
    """Counts per fine bucket (``BOUNDS``) and the sum of what was observed."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BOUNDS, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, other: "Histogram") -> None:
        mine = self.counts
        for i, n in enumerate(other.counts):
            if n:
                mine[i] += n
        self.sum += other.sum

    def sparse(self) -> list[list[int]]:
        return [[i, n] for i, n in enumerate(self.counts) if n]

    @classmethod
    def from_sparse(cls, pairs: Iterable[Iterable[int]]) -> "Histogram":
        h = cls()
        for i, n in pairs:
            if 0 <= i < NBUCKETS:
                h.counts[i] += n
        return h

    def quantile(self, q: float) -> float | None:
        return quantile(self.counts, q)


def quantile(counts: list[int], q: float) -> float | None:
    """The q-quantile (seconds), interpolated linearly inside its bucket; None if empty."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if not n:
            continue
        if seen + n >= rank:
            lo = BOUNDS[i - 1] if i > 0 else 0.0
            if i >= len(BOUNDS):
                return BOUNDS[-1]
            hi = BOUNDS[i]
            return lo + (hi - lo) * max(0.0, min(1.0, (rank - seen) / n))
        seen += n
    return BOUNDS[-1]
