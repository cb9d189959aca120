"""billing.overview for the console: ranges in the tenant's zone (hourly up to 48 h, daily beyond),
spend and errors, latency percentiles / TTFT / output speed per model and key, tokens by model and
the top spenders, all read from the rollups."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.services import api_key_issue, tenant_create
from billing.overview import (
    OTHER,
    RangeError,
    latency_series,
    overview_range,
    tokens_by_model,
    top_spenders,
    traffic_series,
)
from billing.selectors import UsageFilter, usage_csv_chunks
from tests.billing.test_overview import record, save

pytestmark = pytest.mark.django_db

LA = "America/Los_Angeles"


@pytest.fixture
def la():
    return tenant_create(name="Coast", slug="coast", timezone_name=LA)


def test_presets_choose_hours_for_a_day_and_days_beyond(la):
    now = datetime(2026, 7, 10, 18, 25, tzinfo=UTC)
    day = overview_range(tenant=la, preset="24h", now=now)
    assert day.hourly and len(day.keys) == 24
    assert day.keys[-1] == datetime(2026, 7, 10, 18, tzinfo=UTC)  # the current hour is the last
    week = overview_range(tenant=la, preset="7d", now=now)
    assert not week.hourly and week.keys[0] == date(2026, 7, 4) and week.keys[-1] == date(2026, 7, 10)
    assert week.start == datetime(2026, 7, 4, 7, tzinfo=UTC)  # midnight PDT
    two_days = overview_range(
        tenant=la, preset="custom", first_day=date(2026, 7, 1), last_day=date(2026, 7, 2), now=now
    )
    assert two_days.hourly and len(two_days.keys) == 48
    three_days = overview_range(
        tenant=la, preset="custom", first_day=date(2026, 7, 1), last_day=date(2026, 7, 3), now=now
    )
    assert not three_days.hourly and len(three_days.keys) == 3


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (None, date(2026, 7, 1), "first and the last day"),
        (date(2026, 7, 2), date(2026, 7, 1), "before its first day"),
        (date(2020, 1, 1), date(2026, 7, 1), "at most 400 days"),
    ],
)
def test_a_custom_range_that_cannot_be_shown_says_why(la, first, last, message):
    with pytest.raises(RangeError, match=message):
        overview_range(tenant=la, preset="custom", first_day=first, last_day=last)


def test_an_unknown_preset_is_refused(la):
    with pytest.raises(RangeError, match="Unknown range"):
        overview_range(tenant=la, preset="1y")


# Los Angeles leaves daylight saving time on 2026-11-01 at 02:00 PDT (09:00 UTC): that day has 25 hours.
CALLS = [
    datetime(2026, 10, 31, 23, 30, tzinfo=UTC) + timedelta(hours=7),  # 31 Oct 23:30 PDT
    datetime(2026, 11, 1, 0, 30, tzinfo=UTC) + timedelta(hours=7),  # 1 Nov 00:30 PDT
    datetime(2026, 11, 1, 23, 30, tzinfo=UTC) + timedelta(hours=8),  # 1 Nov 23:30 PST
    datetime(2026, 11, 2, 0, 30, tzinfo=UTC) + timedelta(hours=8),  # 2 Nov 00:30 PST
]


def test_calls_at_23_30_and_00_30_local_fall_on_their_local_days_across_dst_in_chart_and_csv(la):
    save(*(record(la, at, cost=Decimal(index + 1) / 1000) for index, at in enumerate(CALLS)))
    with time_machine.travel(datetime(2026, 11, 3, 20, 0, tzinfo=UTC), tick=False):
        span = overview_range(tenant=la, preset="7d")
        days = {
            bucket.start.date(): (bucket.requests, bucket.cost)
            for bucket in traffic_series(tenant=la, span=span)
        }
        rows = list(
            csv.DictReader(
                io.StringIO(
                    "".join(usage_csv_chunks(tenant=la, query=UsageFilter(start=span.start, end=span.end)))
                )
            )
        )
        nov_1 = overview_range(
            tenant=la, preset="custom", first_day=date(2026, 11, 1), last_day=date(2026, 11, 1)
        )
        hours = traffic_series(tenant=la, span=nov_1)
    assert days[date(2026, 10, 31)] == (1, Decimal("0.001"))
    assert days[date(2026, 11, 1)] == (2, Decimal("0.005"))
    assert days[date(2026, 11, 2)] == (1, Decimal("0.004"))
    assert sum(requests for requests, _ in days.values()) == 4
    assert [row["created_at"] for row in rows] == [
        "2026-10-31T23:30:00.000-07:00",
        "2026-11-01T00:30:00.000-07:00",
        "2026-11-01T23:30:00.000-08:00",
        "2026-11-02T00:30:00.000-08:00",
    ]
    # The local day of the change: 25 hourly buckets, 01:00 twice (PDT, then PST).
    assert len(hours) == 25
    labels = [bucket.start.strftime("%H:%M %Z") for bucket in hours]
    assert labels[:4] == ["00:00 PDT", "01:00 PDT", "01:00 PST", "02:00 PST"]
    assert [bucket.requests for bucket in hours if bucket.requests] == [1, 1]
    assert hours[0].requests == 1 and hours[-1].requests == 1


def test_traffic_counts_errors_by_class_and_sums_cost_exactly(la):
    at = datetime(2026, 7, 10, 17, 5, tzinfo=UTC)
    save(
        record(la, at, cost=Decimal("0.000000001")),
        record(la, at, status=429, cost=Decimal(0)),
        record(la, at, status=502, cost=Decimal(0)),
        record(la, at, status=200, error_type="upstream_stream_broken", cost=Decimal("0.1")),
    )
    span = overview_range(tenant=la, preset="24h", now=at)
    bucket = traffic_series(tenant=la, span=span)[-1]
    assert bucket.requests == 4 and bucket.cost == Decimal("0.100000001")
    assert bucket.errors["errors_rate_limit"] == 1 and bucket.errors["errors_5xx"] == 2
    assert bucket.error_count == 3


def test_latency_ttft_and_output_speed_per_model_and_per_key(la):
    at = datetime(2026, 7, 10, 17, 5, tzinfo=UTC)
    fast = api_key_issue(tenant=la, name="fast").api_key
    slow = api_key_issue(tenant=la, name="slow").api_key
    stream = dict(streamed=True, status=200)
    save(
        *(
            record(
                la,
                at,
                api_key_id=fast.pk,
                requested_model="gpt-4.1",
                latency_ms=Decimal(1000),
                ttft_ms=Decimal(200),
                completion_tokens=400,
                **stream,
            )
            for _ in range(10)
        ),
        *(
            record(
                la,
                at,
                api_key_id=slow.pk,
                requested_model="claude-sonnet-4",
                latency_ms=Decimal(9000),
                ttft_ms=Decimal(1000),
                completion_tokens=400,
                **stream,
            )
            for _ in range(10)
        ),
    )
    span = overview_range(tenant=la, preset="24h", now=at)
    tenant = latency_series(tenant=la, span=span)[-1]
    by_model = latency_series(tenant=la, span=span, model="gpt-4.1")[-1]
    by_key = latency_series(tenant=la, span=span, api_key_id=slow.pk)[-1]
    both = latency_series(tenant=la, span=span, model="gpt-4.1", api_key_id=slow.pk)[-1]
    assert tenant.requests == 20 and by_model.requests == 10 and by_key.requests == 10 and both.requests == 0
    assert by_model.tokens_per_second == 500.0  # 400 tokens in 0.8 s
    assert by_key.tokens_per_second == 50.0  # 400 tokens in 8 s
    assert tenant.tokens_per_second == round(8000 / 88, 1)  # token-weighted: 8000 tokens in 88 s
    # Percentiles off the histograms: within a factor of √2.
    assert 1000 / 1.42 <= by_model.latency[0] <= 1000 * 1.42
    assert 9000 / 1.42 <= by_key.latency[2] <= 9000 * 1.42
    assert 200 / 1.42 <= by_model.ttft[1] <= 200 * 1.42
    assert both.latency == (None, None, None) and both.tokens_per_second is None


def test_tokens_by_model_keeps_the_biggest_and_sums_the_rest(la):
    at = datetime(2026, 7, 10, 17, 5, tzinfo=UTC)
    save(
        *(
            record(la, at, requested_model=f"m{n}", prompt_tokens=100 * n, completion_tokens=0)
            for n in range(1, 5)
        )
    )
    span = overview_range(tenant=la, preset="7d", now=at)
    series = tokens_by_model(tenant=la, span=span, series_limit=2)
    assert [model.model for model in series.models] == ["m4", "m3", "m2", "m1"]
    assert series.shown == ["m4", "m3"]
    assert series.tokens["m4"][-1] == 400 and series.tokens[OTHER][-1] == 300
    assert sum(series.tokens["m3"]) == 300


def test_top_spenders_by_key_model_and_end_user(la):
    at = datetime(2026, 7, 10, 17, 5, tzinfo=UTC)
    big = api_key_issue(tenant=la, name="big").api_key
    small = api_key_issue(tenant=la, name="small").api_key
    other = tenant_create(name="Other", slug="other")
    save(
        record(la, at, api_key_id=big.pk, end_user="ann", cost=Decimal("2")),
        record(la, at, api_key_id=big.pk, end_user="bob", cost=Decimal("1"), requested_model="o4-mini"),
        record(la, at, api_key_id=small.pk, cost=Decimal("0.5")),
        record(other, at, api_key_id=small.pk, end_user="zed", cost=Decimal("100")),
    )
    span = overview_range(tenant=la, preset="7d", now=at)
    keys = top_spenders(tenant=la, span=span, by="key")
    assert [(k.label, k.cost) for k in keys] == [
        (f"big (th-{big.prefix}…)", Decimal(3)),
        (f"small (th-{small.prefix}…)", Decimal("0.5")),
    ]
    assert [(m.value, m.cost) for m in top_spenders(tenant=la, span=span, by="model")] == [
        ("gpt-4.1", Decimal("2.5")),
        ("o4-mini", Decimal(1)),
    ]
    assert [(u.value, u.requests) for u in top_spenders(tenant=la, span=span, by="end_user")] == [
        ("ann", 1),
        ("bob", 1),
    ]
