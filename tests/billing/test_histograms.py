"""The rollups' latency histograms: buckets, and percentiles read back from summed counts."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from billing import histograms
from billing.histograms import BOUNDS_US, BUCKETS, bucket_of, percentile


def test_buckets_are_log_spaced_two_per_doubling_from_100_us_with_an_overflow_bucket():
    assert BUCKETS == 48 and len(BOUNDS_US) == 47
    assert BOUNDS_US[0] == 100 and BOUNDS_US[2] == 200 and BOUNDS_US[20] == 102_400
    assert all(1.40 < later / earlier < 1.43 for earlier, later in itertools.pairwise(BOUNDS_US[1:]))
    assert bucket_of(0) == 0 and bucket_of(100) == 0 and bucket_of(101) == 1
    assert bucket_of(BOUNDS_US[-1]) == 46 and bucket_of(BOUNDS_US[-1] + 1) == 47 and bucket_of(10**15) == 47
    assert bucket_of(-5) == 0  # a clock that went backwards is not an error
    assert len(histograms.ALL_COLUMNS) == 4 * BUCKETS and histograms.column("ttft", 7) == "ttft_b07"


@given(st.integers(min_value=0, max_value=10**13))
def test_a_value_falls_in_the_bucket_whose_bounds_hold_it(micros):
    bucket = bucket_of(micros)
    if bucket < BUCKETS - 1:
        assert micros <= BOUNDS_US[bucket]
    if bucket > 0:
        assert micros > BOUNDS_US[bucket - 1]


def test_an_empty_histogram_has_no_percentile():
    assert percentile([0] * BUCKETS, 0.5) is None


@given(
    st.lists(st.integers(min_value=101, max_value=BOUNDS_US[-1]), min_size=1, max_size=400),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_a_percentile_is_within_one_bucket_step_of_the_exact_one(values, q):
    counts = [0] * BUCKETS
    for value in values:
        counts[bucket_of(value)] += 1
    exact = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    estimate = percentile(counts, q)
    assert estimate is not None
    assert exact / math.sqrt(2) - 1 <= estimate <= exact * math.sqrt(2) + 1


def test_summing_histograms_gives_the_percentiles_of_the_union():
    fast, slow = [0] * BUCKETS, [0] * BUCKETS
    for _ in range(90):
        fast[bucket_of(1_000)] += 1
    for _ in range(10):
        slow[bucket_of(2_000_000)] += 1
    both = [a + b for a, b in zip(fast, slow, strict=True)]
    p50, p95 = percentile(both, 0.5), percentile(both, 0.95)
    assert p50 is not None and 700 < p50 <= 1_000
    assert p95 is not None and 1_400_000 < p95 <= 2_100_000
