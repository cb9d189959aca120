"""billing.retention.usage_purge: raw usage rows past retention go, in bounded batches, while the
rollups and the credit ledger stay and inserts go on (real PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import time_machine
from django.db import connection

from accounts.services import tenant_create
from billing.models import CreditEntry, UsageHourly, UsageRecord
from billing.retention import LOCK_KEY, retention_floor, usage_purge
from billing.services import usage_records_insert
from tests.billing.test_usage_records_save import event
from tests.support.process import database_url

pytestmark = pytest.mark.django_db
needs_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")


def at(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def record(request_id: str, created: datetime, **overrides: Any) -> None:
    """A call as the usage writer stores it: its raw row and its hourly rollup cell."""
    assert usage_records_insert(events=[event(request_id, created_at_us=at(created), **overrides)]) == 1


def request_ids() -> set[str]:
    return set(UsageRecord.objects.values_list("request_id", flat=True))


def rollups() -> list[dict[str, Any]]:
    return list(UsageHourly.objects.order_by("id").values())


class Deletes:
    """Every DELETE the purge sends, with how many rows it deleted."""

    def __init__(self) -> None:
        self.rowcounts: list[int] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("DELETE"):
            self.rowcounts.append(context["cursor"].rowcount)
        return result


def test_it_deletes_rows_past_retention_and_keeps_the_rest_and_the_rollups(caplog):
    now = datetime.now(UTC)
    tenant = tenant_create(name="Acme", slug="acme")
    record("old-1", now - timedelta(days=200))
    record("old-2", now - timedelta(days=91))
    record("old-credits", now - timedelta(days=120), tenant_id=tenant.id, credits=True, cost_nanos=5_000)
    record("kept-1", now - timedelta(days=89))
    record("kept-2", now - timedelta(minutes=1))
    before = rollups()
    charges = list(CreditEntry.objects.values_list("request_id", "amount"))
    assert charges == [("old-credits", Decimal("-0.000005"))]

    with caplog.at_level(logging.INFO, logger="billing.retention"):
        assert usage_purge() == 3

    assert request_ids() == {"kept-1", "kept-2"}
    assert rollups() == before  # every call still counted, including the purged ones
    assert sum(cell["requests"] for cell in before) == 5
    assert list(CreditEntry.objects.values_list("request_id", "amount")) == charges  # the ledger stays
    [line] = [r.getMessage() for r in caplog.records if r.name == "billing.retention"]
    assert line.startswith("usage purge: 3 raw rows created before ") and " s (1 batches)" in line


def test_it_is_idempotent_and_quiet_when_there_is_nothing_to_delete(caplog):
    now = datetime.now(UTC)
    record("old", now - timedelta(days=100))
    record("new", now)
    assert usage_purge() == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="billing.retention"):
        assert usage_purge() == 0
        UsageRecord.objects.all().delete()
        assert usage_purge() == 0  # an empty table
    assert not [r for r in caplog.records if r.name == "billing.retention"]


def test_it_keeps_rows_for_as_many_days_as_the_setting_says(settings):
    now = datetime.now(UTC)
    record("100-days", now - timedelta(days=100))
    record("130-days", now - timedelta(days=130))
    settings.TOLLHOUSE_USAGE_RETENTION_DAYS = 120
    assert usage_purge() == 1
    assert request_ids() == {"100-days"}


def test_it_purges_before_an_explicit_instant():
    now = datetime.now(UTC)
    record("a", now - timedelta(days=300, seconds=1))
    record("b", now - timedelta(days=300))
    record("c", now - timedelta(days=299))
    assert usage_purge(before=now - timedelta(days=300)) == 1
    assert request_ids() == {"b", "c"}


@pytest.mark.parametrize(
    ("now", "floor"),
    [
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        (datetime(2026, 3, 31, 23, 59, tzinfo=UTC), datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        (datetime(2026, 1, 15, 0, 0, tzinfo=UTC), datetime(2025, 11, 30, 10, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
    ],
)
def test_its_floor_is_the_start_of_the_previous_month_where_months_start_first(now, floor):
    assert retention_floor(now) == floor


def test_it_never_purges_a_month_a_budget_counter_may_still_be_derived_from(settings):
    """counters_reconcile re-derives a monthly budget from its month's raw rows, and a month's pot
    lives a few days past its end: a retention of 1 day still keeps the previous month."""
    settings.TOLLHOUSE_USAGE_RETENTION_DAYS = 1
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        record("before-floor", datetime(2026, 1, 31, 9, 59, 59, tzinfo=UTC))
        record("at-floor", datetime(2026, 1, 31, 10, 0, tzinfo=UTC))  # Feb 1st, 00:00 in UTC+14
        record("february", datetime(2026, 2, 15, tzinfo=UTC))
        record("yesterday", datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
        assert usage_purge() == 1
        assert usage_purge(before=datetime(2026, 3, 2, 10, 0, tzinfo=UTC)) == 0
    assert request_ids() == {"at-floor", "february", "yesterday"}


def test_it_deletes_in_bounded_batches_each_its_own_statement():
    now = datetime.now(UTC)
    usage_records_insert(
        events=[
            event(f"old-{i:02d}", created_at_us=at(now - timedelta(days=100, minutes=i))) for i in range(25)
        ]
    )
    record("recent", now)
    deletes = Deletes()
    with connection.execute_wrapper(deletes):
        assert usage_purge(batch_size=10, pause_seconds=0) == 25
    assert len(deletes.rowcounts) == 3 and max(deletes.rowcounts) <= 10
    assert sum(deletes.rowcounts) == 25
    assert request_ids() == {"recent"}


def test_it_judges_each_row_by_its_time_not_by_its_id():
    """A call drained days late has a high id and an old time; rows between are kept."""
    now = datetime.now(UTC)
    record("old-early", now - timedelta(days=100))
    for i in range(7):
        record(f"recent-{i}", now - timedelta(days=1))
    record("old-late", now - timedelta(days=95))
    assert usage_purge(batch_size=3, pause_seconds=0) == 2
    assert request_ids() == {f"recent-{i}" for i in range(7)}


@pytest.mark.parametrize(
    "arguments",
    [
        {"before": datetime(2020, 1, 1)},  # naive
        {"before": "2020-01-01"},
        {"batch_size": 0},
        {"batch_size": "10"},
        {"batch_size": True},
        {"pause_seconds": float("nan")},
        {"pause_seconds": -1},
        {"pause_seconds": 10**9},
    ],
)
def test_it_refuses_nonsense_arguments_and_deletes_nothing(arguments):
    record("old", datetime.now(UTC) - timedelta(days=400))
    with pytest.raises(ValueError, match=r"^[a-z_]+ must be [^.]+$"):
        usage_purge(**arguments)
    assert request_ids() == {"old"}


@needs_postgresql
def test_it_skips_while_another_purge_holds_the_lock(caplog):
    record("old", datetime.now(UTC) - timedelta(days=100))
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        with caplog.at_level(logging.INFO, logger="billing.retention"):
            assert usage_purge() == 0
        assert request_ids() == {"old"}
        assert "another purge is running" in caplog.text
        other.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    assert usage_purge() == 1
    # And the purge let go of the lock: anyone may take it now.
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone() == (True,)


# --- against other connections: committed data, real threads ------------------------------------


def old_rows(count: int, *, oldest: datetime, span: timedelta) -> None:
    """`count` raw rows spread evenly over `span` from `oldest`, in one statement (as fast as the
    database can write them); every column not named gets the model's default."""
    fields = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]
    columns, values, params = [], [], []
    for field in fields:
        columns.append(connection.ops.quote_name(field.column))
        if field.name == "request_id":
            values.append("'seeded-' || g")
        elif field.name == "created_at":
            values.append("%s::timestamptz + g * %s::interval")
            params += [oldest, span / count]
        elif field.name == "status":
            values.append("200")
        else:
            values.append("%s")
            params.append(None if field.null else field.get_db_prep_save(field.get_default(), connection))
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM generate_series(0, %s) g"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, count - 1])
        cursor.execute(f"ANALYZE {table}")


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_purges_at_once_delete_each_row_exactly_once():
    old_rows(20_000, oldest=datetime.now(UTC) - timedelta(days=200), span=timedelta(days=1))
    results: list[int] = []

    def purge() -> None:
        try:
            results.append(usage_purge(batch_size=1000, pause_seconds=0.001))
        finally:
            connection.close()

    threads = [threading.Thread(target=purge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results)[-1] > 0 and sum(results) == 20_000
    assert UsageRecord.objects.count() == 0


@needs_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(90)
def test_a_days_rows_go_in_under_five_seconds_while_inserts_go_on():
    """300,000 rows (a day at 3.5 calls a second) among newer ones, purged while another connection
    keeps inserting calls as the usage writer does; no insert waits for the purge."""
    now = datetime.now(UTC)
    old_rows(300_000, oldest=now - timedelta(days=100), span=timedelta(days=1))
    usage_records_insert(
        events=[event(f"kept-{i}", created_at_us=at(now - timedelta(days=2))) for i in range(500)]
    )
    purging = threading.Event()
    done = threading.Event()
    latencies: list[float] = []
    errors: list[BaseException] = []

    def insert_calls() -> None:
        try:
            purging.wait(10)
            i = 0
            while not done.is_set():
                started = time.monotonic()
                usage_records_insert(events=[event(f"during-{i}", created_at_us=at(datetime.now(UTC)))])
                latencies.append(time.monotonic() - started)
                i += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    inserter = threading.Thread(target=insert_calls)
    inserter.start()
    try:
        purging.set()
        started = time.monotonic()
        deleted = usage_purge()
        took = time.monotonic() - started
    finally:
        done.set()
        inserter.join(30)
    assert not errors, errors
    assert deleted == 300_000
    assert took < 5.0, took
    assert len(latencies) >= 10, latencies  # inserts really ran while the purge did
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
    assert UsageRecord.objects.count() == 500 + len(latencies)
    print(
        f"purged {deleted} rows in {took:.2f} s; {len(latencies)} inserts, slowest {max(latencies) * 1000:.0f} ms"
    )


def test_the_beat_task_purges_past_the_setting_and_reconcile_ignores_purged_hours(settings):
    from billing import tasks
    from billing.reconcile import usage_reconcile

    now = datetime.now(UTC)
    record("ancient", now - timedelta(days=200))
    record("recent", now - timedelta(days=3))
    assert tasks.usage_purge() == 1
    assert request_ids() == {"recent"}
    # The purged call's rollup stays; reconciling from before it compares only hours still kept.
    assert UsageHourly.objects.filter(requests=1).count() == 2
    assert usage_reconcile(since=now - timedelta(days=365)) == []
