"""Fixed-bucket latency histograms: how the rollups keep percentiles that add up.

A percentile cannot be averaged, but bucket counts can be summed: an hour's histogram plus the
next hour's is the two hours' histogram, so p50 / p95 / p99 can be read at any granularity, from
an hour to months, by summing rows and reading the percentile off the sum.

The buckets are log-spaced, two per doubling (each bound is √2 times the one before), from
100 µs to about 14 minutes, so the relative error of a percentile is the same at every scale:

    bucket 0        value ≤ 100 µs
    bucket k        BOUNDS_US[k-1] < value ≤ BOUNDS_US[k],   BOUNDS_US[k] = round(100 µs · 2^(k/2))
    bucket 47       value > BOUNDS_US[46] ≈ 839 s (overflow)

A percentile is interpolated geometrically inside its bucket, so it is within a factor of
√2 ≈ 1.41 of the true value at worst, and much closer in practice (interpolation assumes values
spread evenly on a log scale within a bucket). Four histograms are kept per rollup row: total
latency, time to first token, upstream latency and gateway overhead.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

BUCKETS = 48
BOUNDS_US: tuple[int, ...] = tuple(round(100 * 2 ** (k / 2)) for k in range(BUCKETS - 1))
HISTOGRAMS = ("latency", "ttft", "upstream", "overhead")


def column(histogram: str, bucket: int) -> str:
    return f"{histogram}_b{bucket:02d}"


COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(column(name, bucket) for bucket in range(BUCKETS)) for name in HISTOGRAMS
}
ALL_COLUMNS: tuple[str, ...] = tuple(name for names in COLUMNS.values() for name in names)


def bucket_of(micros: int) -> int:
    """The bucket a duration in microseconds falls in (a negative one counts as 0)."""
    return bisect_left(BOUNDS_US, micros)  # len(BOUNDS_US) == BUCKETS - 1: the overflow bucket


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q ≤ 1) in microseconds of a histogram's bucket counts; None if empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total  # the rank-th smallest value, 0 < rank ≤ total
    seen = 0
    for bucket, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            low, high = _bounds(bucket)
            fraction = (rank - seen) / count
            return low * math.pow(high / low, fraction)
        seen += count
    low, high = _bounds(len(counts) - 1)  # rounding: rank a hair above the total
    return high


def _bounds(bucket: int) -> tuple[float, float]:
    """A bucket's value range for interpolation (the first and the overflow bucket are given a
    width of one step, as if the scale went on)."""
    if bucket <= 0:
        return BOUNDS_US[0] / math.sqrt(2), float(BOUNDS_US[0])
    if bucket >= BUCKETS - 1:
        return float(BOUNDS_US[-1]), BOUNDS_US[-1] * math.sqrt(2)
    return float(BOUNDS_US[bucket - 1]), float(BOUNDS_US[bucket])
