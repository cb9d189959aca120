"""billing.selectors for the usage explorer: filters, keyset pages, one call, and the CSV export
(streamed in chunks, tenant time zone, exact decimal costs, spreadsheet-safe text)."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import api_key_issue, tenant_create
from billing.models import UsageRecord
from billing.selectors import (
    BadCursor,
    UsageFilter,
    credit_ledger_page,
    usage_csv_chunks,
    usage_page,
    usage_record_for,
    usage_rows,
)
from tests.billing.test_overview import record, save

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
WIDE = UsageFilter(start=T0 - timedelta(days=1), end=T0 + timedelta(days=1))


@pytest.fixture
def tokyo():
    return tenant_create(name="Tokyo", slug="tokyo", timezone_name="Asia/Tokyo")


def test_filters_by_key_model_end_user_and_status_class(tokyo):
    key = api_key_issue(tenant=tokyo, name="k").api_key
    save(
        record(tokyo, T0, api_key_id=key.pk, end_user="ann"),
        record(tokyo, T0, requested_model="o4-mini", status=429),
        record(tokyo, T0, status=502),
        record(tokyo, T0 + timedelta(days=2)),  # outside the range
        record(tenant_create(name="G", slug="g"), T0, api_key_id=key.pk),  # another tenant
    )

    def count(**kwargs):
        query = UsageFilter(start=WIDE.start, end=WIDE.end, **kwargs)
        return usage_rows(tenant=tokyo, query=query).count()

    assert count() == 3
    assert count(api_key_id=key.pk) == 1
    assert count(model="o4-mini") == 1
    assert count(end_user="ann") == 1
    assert (count(status_class="success"), count(status_class="4xx"), count(status_class="5xx")) == (1, 1, 1)
    assert count(status_class="error") == 2


def test_pages_follow_the_keyset_newest_first_without_gaps_or_repeats(tokyo):
    # Many calls share one instant: the id breaks the tie.
    save(*(record(tokyo, T0 + timedelta(seconds=n // 3)) for n in range(23)))
    seen, cursor, pages = [], "", 0
    while True:
        page = usage_page(tenant=tokyo, query=WIDE, after=cursor, size=5)
        seen += [row.pk for row in page.rows]
        pages += 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    expected = list(UsageRecord.objects.order_by("-created_at", "-id").values_list("pk", flat=True))
    assert seen == expected and pages == 5


def test_a_page_deep_down_uses_no_offset(tokyo):
    save(*(record(tokyo, T0 + timedelta(seconds=n)) for n in range(12)))
    first = usage_page(tenant=tokyo, query=WIDE, size=5)
    with CaptureQueriesContext(connection) as queries:
        usage_page(tenant=tokyo, query=WIDE, after=first.next_cursor, size=5)
    (sql,) = [q["sql"] for q in queries.captured_queries]
    assert "OFFSET" not in sql.upper() and "LIMIT 6" in sql.upper()


@pytest.mark.parametrize(
    "cursor", ["x", "1.", "..", "1.2.3", "9" * 60 + ".1", "١٢.٣", "99999999999999999999.1"]
)
def test_a_forged_cursor_is_refused(tokyo, cursor):
    with pytest.raises(BadCursor):
        usage_page(tenant=tokyo, query=WIDE, after=cursor)
    with pytest.raises(BadCursor):
        credit_ledger_page(tenant=tokyo, after=cursor)


def test_one_call_is_found_only_in_its_tenant(tokyo):
    other = tenant_create(name="G", slug="g")
    save(record(tokyo, T0), record(other, T0))
    mine, theirs = UsageRecord.objects.order_by("tenant_id")
    assert usage_record_for(tenant=tokyo, record_id=mine.pk) == mine
    assert usage_record_for(tenant=tokyo, record_id=theirs.pk) is None


def read_csv(tenant, query=WIDE, **kwargs):
    return list(csv.DictReader(io.StringIO("".join(usage_csv_chunks(tenant=tenant, query=query, **kwargs)))))


def test_the_csv_has_local_iso_times_exact_costs_and_inert_text(tokyo):
    key = api_key_issue(tenant=tokyo, name="=cmd|' /C calc'!A0").api_key
    save(
        record(tokyo, T0, cost=Decimal("0.000000001"), end_user="=HYPERLINK(\"x\")", api_key_id=key.pk,
               ttft_ms=Decimal("12.5")),
        record(tokyo, T0 + timedelta(minutes=1), cost=Decimal("12345678.123456789"), requested_model="+1"),
    )  # fmt: skip
    first, second = read_csv(tokyo)
    assert first["created_at"] == "2026-05-01T21:00:00.000+09:00"
    assert first["cost_usd"] == "0.000000001" and second["cost_usd"] == "12345678.123456789"
    assert first["end_user"] == '\'=HYPERLINK("x")' and first["api_key_name"].startswith("'=")
    assert second["requested_model"] == "'+1"
    assert first["ttft_ms"] == "12.500" and second["ttft_ms"] == ""
    assert sum(Decimal(row["cost_usd"]) for row in (first, second)) == Decimal("12345678.123456790")


def test_the_csv_is_streamed_one_query_per_chunk_in_order(tokyo):
    save(*(record(tokyo, T0 + timedelta(seconds=n // 4), cost=Decimal(n) / 10**9) for n in range(50)))
    with CaptureQueriesContext(connection) as queries:
        chunks = usage_csv_chunks(tenant=tokyo, query=WIDE, chunk=7)
        header = next(chunks)
        assert (
            header.startswith("request_id,created_at,") and len(queries.captured_queries) == 1
        )  # the key names
        rest = list(chunks)
    assert len(rest) == 8 and len(queries.captured_queries) == 1 + 8
    rows = list(csv.DictReader(io.StringIO(header + "".join(rest))))
    expected = list(UsageRecord.objects.order_by("created_at", "id").values_list("request_id", flat=True))
    assert [row["request_id"] for row in rows] == expected
    assert sum(Decimal(row["cost_usd"]) for row in rows) == Decimal(sum(range(50))) / 10**9


def test_the_csv_memory_stays_flat_as_rows_grow(tokyo):
    def peak(rows: int) -> int:
        UsageRecord.objects.all().delete()
        save(*(record(tokyo, T0 + timedelta(milliseconds=n)) for n in range(rows)))
        tracemalloc.start()
        for _ in usage_csv_chunks(tenant=tokyo, query=WIDE, chunk=200):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(400), peak(4000)
    assert large < small * 1.5, (small, large)
