"""Spend per agent session: the session rollup (tenant × session × hour) is written with the raw
rows, counted once, and read by billing.selectors.usage_by_session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import UsageHourly, UsageHourlySession, UsageHourlyTenant
from billing.selectors import usage_by_session
from billing.services import usage_events_record
from tests.billing.test_usage_records_save import event

pytestmark = pytest.mark.django_db

HOUR = datetime(2026, 9, 21, 14, tzinfo=UTC)


def at(minutes: int) -> int:
    return int((HOUR + timedelta(minutes=minutes)).timestamp() * 1_000_000)


def calls() -> list[dict]:
    return [
        # Session "alpha" over two hours, one of its calls a failure.
        event(
            "a1",
            tenant_id=1,
            session="alpha",
            created_at_us=at(5),
            prompt_tokens=1000,
            cached_tokens=200,
            cache_write_tokens=300,
            completion_tokens=50,
            cost_nanos=4_000_000,
        ),
        event(
            "a2",
            tenant_id=1,
            session="alpha",
            created_at_us=at(50),
            prompt_tokens=10,
            completion_tokens=0,
            cost_nanos=0,
            status=502,
            error_type="upstream_error",
        ),
        event(
            "a3",
            tenant_id=1,
            session="alpha",
            created_at_us=at(70),
            prompt_tokens=500,
            cache_write_tokens=500,
            completion_tokens=5,
            cost_nanos=1_000_001,
        ),
        # Session "beta", cheaper; a call that named no session; another tenant's "alpha".
        event("b1", tenant_id=1, session="beta", created_at_us=at(10), cost_nanos=7),
        event("n1", tenant_id=1, created_at_us=at(15), cost_nanos=99_000_000),
        event("x1", tenant_id=2, session="alpha", created_at_us=at(20), cost_nanos=5),
    ]


def test_it_sums_each_session_of_a_tenant_costliest_first():
    assert usage_events_record(events=calls()).written == 6
    alpha, beta = usage_by_session(tenant_id=1, since=HOUR, until=HOUR + timedelta(hours=2))
    assert (alpha.session, alpha.requests, alpha.errors) == ("alpha", 3, 1)
    assert (alpha.prompt_tokens, alpha.cached_tokens, alpha.cache_write_tokens, alpha.completion_tokens) == (
        1510,
        200,
        800,
        55,
    )
    assert alpha.cost == Decimal("0.005000001")
    assert (alpha.first_hour, alpha.last_hour) == (HOUR, HOUR + timedelta(hours=1))
    assert (beta.session, beta.requests, beta.cost) == ("beta", 1, Decimal("0.000000007"))
    # The other tenant's session of the same name is its own.
    (other,) = usage_by_session(tenant_id=2, since=HOUR, until=HOUR + timedelta(hours=2))
    assert (other.session, other.requests, other.cost) == ("alpha", 1, Decimal("0.000000005"))


def test_it_reads_whole_hours_from_since_s_hour_and_before_until():
    usage_events_record(events=calls())
    (alpha, beta) = usage_by_session(
        tenant_id=1, since=HOUR + timedelta(minutes=30), until=HOUR + timedelta(minutes=1)
    )
    assert (alpha.requests, beta.requests) == (2, 1)  # the 14:00 hour only
    (late,) = usage_by_session(tenant_id=1, since=HOUR + timedelta(hours=1), until=HOUR + timedelta(hours=3))
    assert (late.session, late.requests) == ("alpha", 1)
    assert usage_by_session(tenant_id=1, since=HOUR - timedelta(hours=5), until=HOUR) == []


def test_a_call_delivered_twice_is_counted_once_and_calls_without_a_session_have_no_row():
    usage_events_record(events=calls())
    usage_events_record(events=calls()[:3])
    assert (
        sum(row.requests for row in usage_by_session(tenant_id=1, since=HOUR, until=HOUR + timedelta(days=1)))
        == 4
    )
    assert not UsageHourlySession.objects.filter(session="").exists()


def test_cache_write_tokens_are_summed_in_the_hourly_and_tenant_rollups():
    usage_events_record(events=calls())
    assert sum(UsageHourly.objects.filter(tenant_id=1).values_list("cache_write_tokens", flat=True)) == 800
    assert (
        sum(UsageHourlyTenant.objects.filter(tenant_id=1).values_list("cache_write_tokens", flat=True)) == 800
    )
