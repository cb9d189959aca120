"""/api/v1/tenants/<slug>/usage/...: the overview's series (same range filter), raw calls with the
explorer's filters and keyset pages, one call, and the CSV export; per way in; bad filters are a 400
naming the parameter; another tenant's calls are never listed."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.services import api_key_issue
from billing.models import UsageRecord
from billing.services import usage_records_save
from tests.support.api import API_VISITORS

pytestmark = pytest.mark.django_db

USAGE = "/api/v1/tenants/acme/usage/"
DENIED = {"outsider": 404, "operator": 404, "anonymous": 401, "expired": 401, "revoked": 401}
_serial = itertools.count()


def call(tenant, minutes_ago, **facts):
    values = dict(
        request_id=f"api-{next(_serial)}",
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        tenant_id=tenant.pk,
        requested_model="gpt-4.1",
        served_model="gpt-4.1",
        status=200,
        prompt_tokens=10,
        completion_tokens=5,
        cost=Decimal("0.25"),
        latency_ms=Decimal("100"),
    )
    values.update(facts)
    return UsageRecord(**values)


@pytest.fixture
def calls(roles):
    key = api_key_issue(tenant=roles.tenant, name="app").api_key
    usage_records_save(
        records=[
            call(roles.tenant, 5, api_key_id=key.pk),
            call(roles.tenant, 4, status=429, error_type="rate_limited"),
            call(roles.tenant, 3, requested_model="o4-mini", end_user="=cmd|' /C calc'!A0"),
            call(roles.other, 2, cost=Decimal(7)),
        ]
    )
    return key


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_it_checks_who_reads_usage(api_client, calls, visitor):
    client = api_client(visitor)
    series = client.get(f"{USAGE}series/", {"range": "24h"})
    assert series.status_code == DENIED.get(visitor, 200)
    listed = client.get(f"{USAGE}calls/")
    assert listed.status_code == DENIED.get(visitor, 200)
    export = client.get("/api/v1/tenants/acme/usage.csv")
    assert export.status_code == DENIED.get(visitor) or (403 if visitor == "viewer" else 200)


def test_the_series_is_the_overviews(api_client, calls):
    body = api_client("viewer").get(f"{USAGE}series/", {"range": "24h"}).json()
    assert body["resolution"] == "hour" and len(body["buckets"]) == 24
    assert body["total_requests"] == 3 and body["total_cost"] == "0.750000000"
    last = [bucket for bucket in body["buckets"] if bucket["requests"]]
    assert sum(bucket["errors"]["rate_limit"] for bucket in last) == 1
    assert all(bucket["latency_ms"]["p50"] for bucket in last)
    daily = api_client("viewer").get(f"{USAGE}series/", {"range": "7d"}).json()
    assert daily["resolution"] == "day" and len(daily["buckets"]) == 7


def test_raw_calls_filter_and_page_by_keyset(api_client, calls):
    client = api_client("member")
    page = client.get(f"{USAGE}calls/", {"limit": 2}).json()
    ids = [row["request_id"] for row in page["results"]]
    page = client.get(page["next"]).json()
    ids += [row["request_id"] for row in page["results"]]
    assert len(ids) == 3 and page["next"] is None  # globex's call is not here
    assert [row["api_key"] for row in client.get(f"{USAGE}calls/", {"key": calls.pk}).json()["results"]] == [
        calls.pk
    ]
    assert len(client.get(f"{USAGE}calls/", {"status": "4xx"}).json()["results"]) == 1
    assert len(client.get(f"{USAGE}calls/", {"model": "o4-mini"}).json()["results"]) == 1
    one = client.get(f"{USAGE}calls/", {"model": "o4-mini"}).json()["results"][0]
    assert client.get(f"{USAGE}calls/{one['id']}/").json()["cost"] == "0.250000000"
    theirs = UsageRecord.objects.get(cost=Decimal(7))
    assert client.get(f"{USAGE}calls/{theirs.pk}/").status_code == 404


@pytest.mark.parametrize(
    "query, field",
    [
        ({"range": "1y"}, "range"),
        ({"range": "custom"}, "first"),
        ({"first": "2026-13-01", "last": "2026-01-01"}, "first"),
        ({"first": "2026-02-01", "last": "2026-01-01"}, "first"),
        ({"first": "1900-01-01", "last": "1900-01-02"}, "first"),
        ({"key": "abc"}, "key"),
        ({"key": "99999"}, "key"),
        ({"status": "teapot"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "x"}, "cursor"),
    ],
)
def test_bad_filters_are_a_400_naming_the_parameter(api_client, calls, query, field):
    response = api_client("owner").get(f"{USAGE}calls/", query)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


@pytest.mark.django_db(transaction=True)
def test_the_csv_is_streamed_like_the_consoles(roles, calls):
    from asgiref.sync import async_to_sync

    from tests.support.api import token_for

    async_to_sync(_csv_streams)(token_for(roles.member))


async def _csv_streams(raw):
    from django.test import AsyncClient

    response = await AsyncClient().get(
        "/api/v1/tenants/acme/usage.csv", {"range": "24h"}, headers={"Authorization": f"Bearer {raw}"}
    )
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8" and response["Cache-Control"] == "no-store"
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    lines = text.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("request_id,created_at")
    assert "'=cmd" in text and "7.000000000" not in text
