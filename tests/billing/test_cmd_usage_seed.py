"""`manage.py usage_seed --tenant SLUG --rows N --days D [--keys K] [--models M]` (billing/seed.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management.base import CommandError
from django.db.models import Sum

from accounts.models import ApiKey
from accounts.services import api_key_issue, tenant_create
from billing.models import UsageHourly, UsageRecord
from billing.pricing import PriceNanos, cost_nanos, dollars_to_nanos
from billing.rollups import SUM_COLUMNS, cells_of
from billing.services import model_price_set
from tests.support.manage import call, one_sentence_error, run
from tests.support.snapshot import db_snapshot


@pytest.fixture
def acme(db):
    return tenant_create(name="Acme", slug="acme", timezone_name="Asia/Tokyo")


def seed(*args: str) -> str:
    return call("usage_seed", "--tenant", "acme", *args).stdout


def stored_cells() -> dict[tuple, tuple]:
    names = ["tenant_id", "hour", "api_key_id", "end_user", "requested_model", "served_model"]
    return {tuple(row[:6]): tuple(row[6:]) for row in UsageHourly.objects.values_list(*names, *SUM_COLUMNS)}


def test_it_writes_the_rows_asked_for(acme):
    output = seed("--rows", "3000", "--days", "3", "--keys", "3", "--models", "2")
    rows = list(UsageRecord.objects.order_by("pk"))
    assert len(rows) == 3000
    assert {row.tenant_id for row in rows} == {acme.pk}
    assert len({row.request_id for row in rows}) == 3000
    run_id = rows[0].request_id.split("-")[1]
    assert all(row.request_id.startswith(f"seed-{run_id}-") for row in rows)
    # In created_at order, within the last 3 days.
    assert [row.created_at for row in rows] == sorted(row.created_at for row in rows)
    now = datetime.now(tz=UTC)
    assert now - timedelta(days=3, minutes=1) <= rows[0].created_at and rows[-1].created_at <= now
    assert len({row.api_key_id for row in rows}) == 3
    assert len({row.requested_model for row in rows}) == 2
    assert "Seeded 3,000 usage rows for tenant acme" in output
    assert "rows/s" in output


def test_its_rollups_are_what_the_live_writer_makes_of_the_rows(acme):
    seed("--rows", "4000", "--days", "2")
    expected = {key: cell.values() for key, cell in cells_of(UsageRecord.objects.all()).items()}
    assert stored_cells() == expected


def test_its_rollups_add_up_to_the_rows_per_day(acme):
    seed("--rows", "2500", "--days", "4")
    raw: dict = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for row in UsageRecord.objects.all():
        # Rollups are hourly: a day here is the UTC day of the row's hour.
        day = row.created_at.astimezone(UTC).date()
        raw[day][0] += 1
        raw[day][1] += row.prompt_tokens
        raw[day][2] += row.completion_tokens
        raw[day][3] += row.cost
    rolled: dict = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for cell in UsageHourly.objects.all():
        day = cell.hour.astimezone(UTC).date()
        rolled[day][0] += cell.requests
        rolled[day][1] += cell.prompt_tokens
        rolled[day][2] += cell.completion_tokens
        rolled[day][3] += cell.cost
    assert dict(rolled) == dict(raw)


def test_seeding_twice_adds_up(acme):
    seed("--rows", "1000", "--days", "1", "--keys", "2", "--models", "1")
    seed("--rows", "1500", "--days", "1", "--keys", "2", "--models", "1")
    assert UsageRecord.objects.count() == 2500
    assert UsageHourly.objects.aggregate(n=Sum("requests"))["n"] == 2500
    assert (
        UsageHourly.objects.aggregate(c=Sum("cost"))["c"] == UsageRecord.objects.aggregate(c=Sum("cost"))["c"]
    )


def test_the_traffic_looks_real(acme):
    seed("--rows", "20000", "--days", "7", "--keys", "10", "--models", "4")
    rows = list(UsageRecord.objects.all())
    errors = [row for row in rows if row.status >= 400]
    assert 0.015 < len(errors) / len(rows) < 0.06
    assert {400, 401, 402, 429, 499} <= {row.status for row in errors}
    assert any(row.status >= 500 for row in errors)
    streamed = [row for row in rows if row.streamed]
    assert 0.2 < len(streamed) / len(rows) < 0.4
    assert all(
        row.ttft_ms is not None and row.ttft_ms <= row.latency_ms for row in streamed if row.status == 200
    )
    assert all(row.ttft_ms is None for row in rows if not row.streamed)
    # Refusals cost nothing; successes have tokens and a cost.
    assert all(row.cost == 0 and row.prompt_tokens == 0 for row in errors if row.status in (401, 402, 429))
    assert all(row.prompt_tokens > 0 and row.cost > 0 for row in rows if row.status == 200)
    # Heavy keys: the busiest key makes several times the calls of the quietest.
    per_key = defaultdict(int)
    for row in rows:
        per_key[row.api_key_id] += 1
    assert max(per_key.values()) > 5 * min(per_key.values())
    assert any(row.end_user for row in rows)
    # Diurnal in the tenant's zone (Tokyo): its working hours are far busier than its nights.
    zone = ZoneInfo("Asia/Tokyo")
    local_hours = [row.created_at.astimezone(zone).hour for row in rows]
    day = sum(1 for hour in local_hours if 9 <= hour < 17)
    night = sum(1 for hour in local_hours if 0 <= hour < 6)
    assert day > 3 * night


def test_it_uses_the_tenants_keys_and_issues_the_missing_ones_without_showing_them(acme):
    existing = api_key_issue(tenant=acme, name="prod")
    output = seed("--rows", "500", "--days", "1", "--keys", "3")
    keys = list(ApiKey.objects.filter(tenant=acme).order_by("pk"))
    assert [key.name for key in keys] == ["prod", "seed-2", "seed-3"]
    assert {row.api_key_id for row in UsageRecord.objects.all()} == {key.pk for key in keys}
    assert existing.raw not in output
    assert "th-" not in output  # no key, raw or prefixed, is printed


def test_costs_are_exact_with_the_operators_price(acme):
    price = dict(
        input_per_mtok=Decimal("1.234567891"),
        cached_input_per_mtok=Decimal("0.5"),
        output_per_mtok=Decimal("7.000000003"),
    )
    model_price_set(model="gpt-4.1-mini", effective_from=datetime(2000, 1, 1, tzinfo=UTC), **price)
    seed("--rows", "800", "--days", "1", "--models", "1")
    nanos = PriceNanos.from_decimals(**price)
    rows = list(UsageRecord.objects.all())
    assert {row.served_model for row in rows} == {"gpt-4.1-mini"}
    for row in rows:
        expected = cost_nanos(
            price=nanos,
            prompt_tokens=row.prompt_tokens,
            cached_tokens=row.cached_tokens,
            completion_tokens=row.completion_tokens,
        )
        assert dollars_to_nanos(row.cost) == expected


def test_it_uses_the_model_routes(world):
    call("usage_seed", "--tenant", "acme", "--rows", "300", "--days", "1", "--models", "2")
    from gateway.models import Deployment

    routes = sorted({d.route.name for d in Deployment.objects.select_related("route")})[:2]
    assert {row.requested_model for row in UsageRecord.objects.all()} == set(routes)
    assert all(row.deployment_id is not None and row.provider == "mock" for row in UsageRecord.objects.all())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "0", "--days", "1"], "--rows must be a whole number greater than 0, not '0'."),
        (["--rows", "ten", "--days", "1"], "--rows must be a whole number greater than 0, not 'ten'."),
        (["--rows", "10", "--days", "-3"], "--days must be a whole number greater than 0, not '-3'."),
        (["--rows", "10", "--days", "3651"], "--days must be at most 3,650, not 3651."),
        (["--rows", "10", "--days", "1", "--keys", "1001"], "--keys must be at most 1,000, not 1001."),
        (
            ["--rows", "10", "--days", "1", "--models", "2.5"],
            "--models must be a whole number greater than 0, not '2.5'.",
        ),
        (["--rows", "10\x00", "--days", "1"], "--rows cannot contain a NUL character."),
        (["--rows", "9" * 400_000, "--days", "1"], "--rows must be at most 1,000,000,000."),
    ],
)
def test_it_refuses_bad_arguments_and_writes_nothing(acme, args, message):
    before = db_snapshot()
    with pytest.raises(CommandError) as refused:
        seed(*args)
    if message is not None:
        assert str(refused.value) == message
    assert len(str(refused.value)) < 300
    assert db_snapshot() == before
    assert not UsageRecord.objects.exists() and not UsageHourly.objects.exists()


def test_it_refuses_an_unknown_tenant(db):
    with pytest.raises(CommandError, match=r"^There is no tenant with the slug 'nope'\.$"):
        call("usage_seed", "--tenant", "nope", "--rows", "10", "--days", "1")
    assert not UsageRecord.objects.exists()


def test_a_refusal_is_one_sentence_and_exit_1(transactional_db):
    result = run("usage_seed", "--tenant", "nope", "--rows", "10", "--days", "1")
    assert one_sentence_error(result) == "There is no tenant with the slug 'nope'."
