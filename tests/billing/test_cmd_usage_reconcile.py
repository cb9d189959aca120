"""`manage.py usage_reconcile [--since ISO] [--fix]`: silent and 0 when raw rows, rollups and the
credit ledger agree; one line per difference and 1 when not; --fix re-derives and exits 0."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F
from django.utils import timezone

from accounts.services import tenant_create
from billing.models import CreditEntry, UsageHourly, UsageHourlySession, UsageHourlyTenant, UsageRecord
from billing.services import usage_events_record
from tests.billing.test_usage_records_save import event

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("usage_reconcile", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def now_us(minutes_ago: int = 0) -> int:
    return int((timezone.now() - timedelta(minutes=minutes_ago)).timestamp() * 1_000_000)


@pytest.fixture
def recorded():
    tenant = tenant_create(name="Prepaid", slug="prepaid")
    events = [
        event(
            f"e{index}",
            tenant_id=tenant.id,
            api_key_id=index % 2 + 1,
            created_at_us=now_us(index * 7),
            credits=True,
        )
        for index in range(20)
    ]
    assert usage_events_record(events=events).written == 20
    return tenant


def test_all_in_agreement_prints_nothing_and_exits_0(recorded):
    assert CreditEntry.objects.filter(kind="usage").count() == 20
    assert run() == (0, "")
    assert run("--since", (timezone.now() - timedelta(days=3)).isoformat()) == (0, "")


def test_a_corrupted_rollup_is_reported_and_fix_rederives_it(recorded):
    cell = UsageHourly.objects.order_by("hour", "api_key_id").first()
    UsageHourly.objects.filter(pk=cell.pk).update(completion_tokens=F("completion_tokens") + 3)
    code, out = run()
    assert code == 1
    assert (
        out.count("\n") == 1
        and f"completion_tokens raw {cell.completion_tokens} rollup {cell.completion_tokens + 3}" in out
    )
    assert f"tenant {recorded.id} key {cell.api_key_id}" in out and "'gpt-4.1'" in out
    code, out = run("--fix")
    assert code == 0 and out.endswith("(repaired)\n")
    assert run() == (0, "")


def test_a_lost_rollup_row_and_a_rollup_with_no_rows_are_both_reported_and_fixed(recorded):
    lost = UsageHourly.objects.order_by("hour").first()
    UsageHourly.objects.filter(pk=lost.pk).delete()
    UsageHourly.objects.create(tenant_id=recorded.id, hour=lost.hour, requested_model="ghost", requests=2)
    code, out = run()
    assert code == 1 and "(no rollup row)" in out and "(no raw rows)" in out and "'ghost'" in out
    assert run("--fix")[0] == 0
    assert run() == (0, "")
    assert not UsageHourly.objects.filter(requested_model="ghost").exists()


def test_a_call_on_credits_without_its_charge_is_reported_and_charged_by_fix(recorded):
    CreditEntry.objects.filter(request_id="e3").delete()
    code, out = run()
    assert code == 1 and "call e3 of tenant" in out and "not charged" in out
    assert run("--fix")[0] == 0
    assert CreditEntry.objects.get(request_id="e3").amount == -UsageRecord.objects.get(request_id="e3").cost
    assert run() == (0, "")


def test_hours_before_since_are_not_compared(recorded):
    UsageHourly.objects.create(
        tenant_id=recorded.id,
        hour=datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=5),
        requested_model="old",
        requests=1,
        cost=Decimal(1),
    )
    assert run("--since", (timezone.now() - timedelta(days=1)).date().isoformat()) == (0, "")
    assert run("--since", (timezone.now() - timedelta(days=6)).isoformat())[0] == 1


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "\x00", "2026-11-01T25:00", "x" * 10_000])
def test_a_bad_since_is_one_sentence_and_compares_nothing(recorded, since):
    with pytest.raises(CommandError, match=r"^--since must be an ISO 8601 date or time"):
        call_command("usage_reconcile", "--since", since)


def test_a_corrupted_tenant_rollup_is_reported_and_fixed(recorded):
    hour = UsageHourlyTenant.objects.order_by("hour").first()
    UsageHourlyTenant.objects.filter(pk=hour.pk).update(cost=F("cost") - Decimal("0.000000001"))
    code, out = run()
    assert code == 1 and out.startswith(f"tenant rollup {hour.hour:%Y-%m-%d %H}:00Z tenant {recorded.id}")
    assert f"cost raw {hour.cost} rollup {hour.cost - Decimal('0.000000001')}" in out
    assert run("--fix")[0] == 0
    assert run() == (0, "")


def test_the_daily_task_logs_each_difference_or_that_all_agree(recorded, caplog):
    from billing import tasks

    with caplog.at_level(logging.INFO, logger="billing.tasks"):
        assert tasks.usage_reconcile() == 0
    assert [r.getMessage() for r in caplog.records] == [
        "usage reconcile: raw rows, rollups, counters and credit ledger agree"
    ]
    caplog.clear()
    UsageHourly.objects.filter(pk=UsageHourly.objects.order_by("hour").first().pk).update(
        requests=F("requests") + 1
    )
    with caplog.at_level(logging.INFO, logger="billing.tasks"):
        assert tasks.usage_reconcile() == 1
    assert all(r.levelno == logging.ERROR and "requests raw" in r.getMessage() for r in caplog.records)
    assert UsageHourly.objects.filter(requests__gt=0).exists()  # the task reports, never repairs
    assert run()[0] == 1


def test_a_corrupted_or_lost_session_rollup_is_reported_and_fix_rederives_it(recorded):
    sessions = [
        event(
            f"s{index}",
            tenant_id=recorded.id,
            session=f"sess-{index % 2}",
            created_at_us=now_us(index),
            cache_write_tokens=index,
            cost_nanos=1_000 + index,
        )
        for index in range(6)
    ]
    usage_events_record(events=sessions)
    assert run() == (0, "")
    zero = UsageHourlySession.objects.filter(session="sess-0").order_by("hour").first()
    UsageHourlySession.objects.filter(pk=zero.pk).update(cache_write_tokens=F("cache_write_tokens") + 1)
    UsageHourlySession.objects.filter(session="sess-1").delete()
    UsageHourlySession.objects.create(tenant_id=recorded.id, hour=zero.hour, session="ghost", requests=1)
    code, out = run()
    assert code == 1
    assert f"session rollup {zero.hour:%Y-%m-%d %H}:00Z tenant {recorded.id} session 'sess-0'" in out
    assert f"cache_write_tokens raw {zero.cache_write_tokens} rollup {zero.cache_write_tokens + 1}" in out
    assert "session 'sess-1' (no rollup row)" in out and "session 'ghost' (no raw rows)" in out
    assert run("--fix")[0] == 0
    assert run() == (0, "")
    totals: dict[str, int] = {}
    for session, requests in UsageHourlySession.objects.values_list("session", "requests"):
        totals[session] = totals.get(session, 0) + requests
    assert totals == {"sess-0": 3, "sess-1": 3}
