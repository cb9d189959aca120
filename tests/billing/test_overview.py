"""billing.overview: the 30-day tenant overview, read from the hourly rollups only."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.services import api_key_issue, tenant_create
from billing.models import UsageRecord
from billing.overview import (
    latency_percentiles_per_day,
    overview_window,
    spend_per_day,
    tokens_per_model,
    top_keys,
)
from billing.services import usage_records_save

_serial = iter(range(1, 10**9))


def record(tenant, at: datetime, **facts) -> UsageRecord:
    values = dict(
        request_id=f"r-{next(_serial)}",
        created_at=at,
        tenant_id=tenant.pk,
        requested_model="gpt-4.1",
        served_model="gpt-4.1",
        status=200,
        prompt_tokens=10,
        completion_tokens=5,
        cost=Decimal("0.000000001"),
        latency_ms=Decimal("100"),
    )
    values.update(facts)
    return UsageRecord(**values)


def save(*records: UsageRecord) -> None:
    """Through the live writer: the raw rows and their rollups, as the usage pipeline stores them."""
    usage_records_save(records=list(records))


@pytest.fixture
def paris(db):
    return tenant_create(name="Paris", slug="paris", timezone_name="Europe/Paris")


# Europe/Paris leaves summer time on 2026-10-25 at 03:00 local (01:00 UTC): that day has 25 hours.
NOW = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)


def test_the_window_is_the_tenants_calendar_days(paris):
    window = overview_window(tenant=paris, days=3, now=NOW)
    assert window.days == [date(2026, 10, 25), date(2026, 10, 26), date(2026, 10, 27)]
    assert window.start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # midnight CEST (+2)
    assert window.end == datetime(2026, 10, 27, 23, 0, tzinfo=UTC)  # midnight CET (+1)


def test_spend_per_day_follows_the_local_day_across_dst(paris):
    save(
        record(
            paris, datetime(2026, 10, 24, 21, 59, tzinfo=UTC), cost=Decimal("100")
        ),  # 24th 23:59 local: outside
        record(paris, datetime(2026, 10, 24, 22, 30, tzinfo=UTC), cost=Decimal("1.000000001")),  # 25th 00:30
        record(
            paris, datetime(2026, 10, 25, 22, 59, tzinfo=UTC), cost=Decimal("2.5"), status=429
        ),  # 25th 23:59
        record(paris, datetime(2026, 10, 25, 23, 0, tzinfo=UTC), cost=Decimal("0.123456789")),  # 26th 00:00
        record(paris, datetime(2026, 10, 27, 22, 59, tzinfo=UTC), cost=Decimal("3")),  # 27th 23:59
        record(paris, datetime(2026, 10, 27, 23, 0, tzinfo=UTC), cost=Decimal("50")),  # the 28th: outside
    )
    days = spend_per_day(tenant=paris, days=3, now=NOW)
    assert [(d.day, d.requests, d.errors, d.cost) for d in days] == [
        (date(2026, 10, 25), 2, 1, Decimal("3.500000001")),
        (date(2026, 10, 26), 1, 0, Decimal("0.123456789")),
        (date(2026, 10, 27), 1, 0, Decimal("3")),
    ]
    assert all(isinstance(d.cost, Decimal) for d in days)
    assert days[0].prompt_tokens == 20 and days[0].completion_tokens == 10


def test_a_day_without_calls_reads_zero(paris):
    days = spend_per_day(tenant=paris, days=30, now=NOW)
    assert len(days) == 30
    assert days[-1].day == date(2026, 10, 27)
    assert all(d.requests == 0 and d.cost == Decimal(0) for d in days)
    latencies = latency_percentiles_per_day(tenant=paris, days=30, now=NOW)
    assert all(d.latency_p50 is None and d.ttft_p99 is None for d in latencies)


def test_another_tenants_usage_is_not_counted(paris):
    other = tenant_create(name="Other", slug="other", timezone_name="Europe/Paris")
    save(record(other, NOW - timedelta(hours=1), cost=Decimal("9")))
    assert sum(d.requests for d in spend_per_day(tenant=paris, now=NOW)) == 0
    assert tokens_per_model(tenant=paris, now=NOW) == []
    assert top_keys(tenant=paris, now=NOW) == []


def test_an_hour_straddling_midnight_in_a_half_hour_zone_counts_in_the_day_it_starts_in(db):
    kolkata = tenant_create(name="K", slug="k", timezone_name="Asia/Kolkata")  # +05:30
    # 18:40 UTC is 00:10 on the 27th in Kolkata, but its UTC hour (18:00) starts at 23:30 on the 26th.
    save(record(kolkata, datetime(2026, 10, 26, 18, 40, tzinfo=UTC)))
    days = spend_per_day(tenant=kolkata, days=2, now=datetime(2026, 10, 27, 6, 0, tzinfo=UTC))
    assert [(d.day, d.requests) for d in days] == [(date(2026, 10, 26), 1), (date(2026, 10, 27), 0)]


def test_tokens_per_model(paris):
    at = NOW - timedelta(hours=2)
    save(
        record(
            paris,
            at,
            requested_model="a",
            prompt_tokens=100,
            cached_tokens=40,
            completion_tokens=10,
            cost=Decimal("1"),
        ),
        record(
            paris,
            at,
            requested_model="a",
            served_model="a-2",
            prompt_tokens=1,
            completion_tokens=1,
            cost=Decimal("0.5"),
        ),
        record(paris, at - timedelta(days=3), requested_model="b", prompt_tokens=500, completion_tokens=0),
        record(
            paris, at - timedelta(days=40), requested_model="c", prompt_tokens=9999
        ),  # outside the 30 days
    )
    models = tokens_per_model(tenant=paris, now=NOW)
    assert [
        (m.model, m.requests, m.prompt_tokens, m.cached_tokens, m.completion_tokens, m.cost) for m in models
    ] == [
        ("b", 1, 500, 0, 0, Decimal("0.000000001")),
        ("a", 2, 101, 40, 11, Decimal("1.5")),
    ]


def test_top_keys_by_spend(paris):
    big = api_key_issue(tenant=paris, name="big").api_key
    small = api_key_issue(tenant=paris, name="small").api_key
    at = NOW - timedelta(hours=5)
    save(
        record(paris, at, api_key_id=small.pk, cost=Decimal("1")),
        record(paris, at, api_key_id=small.pk, cost=Decimal("1")),
        record(paris, at, api_key_id=big.pk, cost=Decimal("5")),
        record(paris, at, api_key_id=None, end_user="u1", cost=Decimal("0.25")),  # an end-user token call
    )
    keys = top_keys(tenant=paris, now=NOW)
    assert [(k.api_key_id, k.name, k.prefix, k.requests, k.cost) for k in keys] == [
        (big.pk, "big", big.prefix, 1, Decimal("5")),
        (small.pk, "small", small.prefix, 2, Decimal("2")),
        (0, "", "", 1, Decimal("0.25")),
    ]
    assert len(top_keys(tenant=paris, now=NOW, limit=1)) == 1


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def test_latency_percentiles_are_within_the_bucket_error_of_the_raw_values(paris):
    rng = random.Random(7)
    day_start = datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # the 26th in Paris
    latencies, ttfts, records = [], [], []
    for n in range(2000):
        latency = round(rng.lognormvariate(math.log(900), 0.8), 3)  # ms
        streamed = n % 3 == 0
        ttft = round(latency * rng.uniform(0.1, 0.6), 3) if streamed else None
        latencies.append(latency)
        if streamed:
            ttfts.append(ttft)
        records.append(
            record(
                paris,
                day_start + timedelta(seconds=17 * n),  # spread over ~9.5 hours of that day
                latency_ms=Decimal(str(latency)),
                ttft_ms=None if ttft is None else Decimal(str(ttft)),
                streamed=streamed,
            )
        )
    save(*records)
    days = {d.day: d for d in latency_percentiles_per_day(tenant=paris, days=3, now=NOW)}
    day = days[date(2026, 10, 26)]
    assert day.requests == 2000
    bound = math.sqrt(2)  # billing.histograms: within a factor of √2 at worst
    for q, got in ((0.50, day.latency_p50), (0.95, day.latency_p95), (0.99, day.latency_p99)):
        exact = nearest_rank(latencies, q)
        assert exact / bound <= got <= exact * bound, (q, got, exact)
        assert abs(got / exact - 1) < 0.1  # and in practice much closer
    for q, got in ((0.50, day.ttft_p50), (0.95, day.ttft_p95), (0.99, day.ttft_p99)):
        exact = nearest_rank(ttfts, q)
        assert exact / bound <= got <= exact * bound, (q, got, exact)
    assert days[date(2026, 10, 25)].latency_p50 is None
