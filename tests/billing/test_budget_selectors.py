"""billing.selectors for the budgets page and the overview's spend chart: spend so far from the
rollups, the projection to the period's end, the budget line, alert markers and the alert history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.services import api_key_issue
from billing.models import BudgetAlert, WebhookAttempt
from billing.overview import overview_range
from billing.selectors import (
    alert_history,
    alert_markers,
    budget_for_tenant,
    budget_track,
    budgets_for_tenant,
)
from billing.tasks import budget_alerts_check
from tests.support import alerts as h

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.TOLLHOUSE_ALERT_RETRY_SECONDS = 0


NOW = datetime(2026, 3, 11, 0, 0, tzinfo=UTC)  # a third of March gone (10 of 31 days)


def test_budgets_show_spend_so_far_and_the_projection_per_subject():
    acme = h.tenant()
    key = api_key_issue(tenant=acme, name="ci").api_key
    whole = h.budget(acme, amount=Decimal(100))
    per_key = h.budget(acme, amount=Decimal(10), scope="key", api_key=key, period="day")
    each_user = h.budget(acme, amount=Decimal(5), scope="end_user", end_user="", period="month")
    h.spend(acme, "10.000000001", at=NOW - timedelta(days=5))
    h.spend(acme, "3", at=NOW - timedelta(hours=2), api_key_id=key.pk, end_user="ann")
    h.spend(acme, "1", at=NOW - timedelta(hours=1), end_user="bob")
    h.spend(acme, "1", at=datetime(2026, 2, 27, tzinfo=UTC))  # last month
    h.spend(h.tenant("globex", name="Globex"), "50", at=NOW - timedelta(hours=1))
    statuses = {status.budget.pk: status for status in budgets_for_tenant(tenant=acme, now=NOW)}
    assert statuses[whole.pk].spent == Decimal("14.000000001")
    assert statuses[whole.pk].percent == 14
    # 14.000000001 USD in 10 of 31 days: 43.4 USD by the end of March.
    assert statuses[whole.pk].projected == (Decimal("14.000000001") * 31 / 10).quantize(Decimal("1e-9"))
    assert statuses[whole.pk].projected_percent == 43
    assert statuses[per_key.pk].spent == Decimal(0)  # the key spent yesterday (10 March, UTC)
    assert statuses[per_key.pk].label == f"key ci (th-{key.prefix}…)"
    assert (statuses[each_user.pk].subject, statuses[each_user.pk].subjects) == ("ann", 2)
    assert statuses[each_user.pk].spent == Decimal(3)


def test_no_projection_before_a_tenth_of_the_period():
    acme = h.tenant()
    h.budget(acme, amount=Decimal(100))
    h.spend(acme, "5", at=datetime(2026, 3, 1, 1, tzinfo=UTC))
    (status,) = budgets_for_tenant(tenant=acme, now=datetime(2026, 3, 2, tzinfo=UTC))
    assert status.spent == Decimal(5) and status.projected is None


def test_another_tenants_budget_is_not_found():
    acme, globex = h.tenant(), h.tenant("globex", name="Globex")
    theirs = h.budget(globex)
    assert budget_for_tenant(tenant=acme, budget_id=theirs.pk) is None
    assert budget_for_tenant(tenant=globex, budget_id=theirs.pk) == theirs


def test_the_budget_chart_is_its_period_spent_so_far_and_projected_to_its_end():
    acme = h.tenant()
    h.budget(acme, amount=Decimal(100), thresholds=[50])
    h.spend(acme, "9", at=datetime(2026, 2, 28, 12, tzinfo=UTC))  # February: another period
    h.spend(acme, "10", at=datetime(2026, 3, 2, 12, tzinfo=UTC))
    h.spend(acme, "20", at=datetime(2026, 3, 10, 12, tzinfo=UTC))
    span = overview_range(tenant=acme, preset="30d", now=NOW)
    track = budget_track(tenant=acme, span=span, now=NOW)
    assert track is not None and track.status.spent == Decimal(30)
    assert track.span.keys[0] == date(2026, 3, 1) and track.span.keys[-1] == date(2026, 3, 31)
    spent = dict(zip(track.span.keys, track.cumulative, strict=True))
    assert spent[date(2026, 3, 1)] == 0 and spent[date(2026, 3, 2)] == 10 and spent[date(2026, 3, 9)] == 10
    assert spent[date(2026, 3, 10)] == 30 and spent[date(2026, 3, 11)] == 30  # today, so far
    assert spent[date(2026, 3, 12)] is None  # the future
    # 30 USD in 10 days: 3 a day, from today's 30 to 93 by the end of the 31st.
    heading = dict(zip(track.span.keys, track.projection, strict=True))
    assert heading[date(2026, 3, 10)] is None and heading[date(2026, 3, 11)] == 30
    assert heading[date(2026, 3, 12)] == 36 and heading[date(2026, 3, 31)] == 93
    assert track.status.projected == 93


def test_a_daily_budget_is_tracked_by_the_hour():
    acme = h.tenant()
    h.budget(acme, amount=Decimal(10), period="day")
    h.spend(acme, "2", at=NOW + timedelta(hours=1))
    later = NOW + timedelta(hours=12)
    track = budget_track(tenant=acme, span=overview_range(tenant=acme, preset="24h", now=later), now=later)
    assert track is not None and track.span.hourly and len(track.span.keys) == 24
    assert track.cumulative[1] == 2 and track.cumulative[13] is None
    assert track.projection[-1] == 4  # 2 USD in 12 hours: 4 by midnight


def test_the_range_picks_the_budget_of_its_size():
    acme = h.tenant()
    h.budget(acme, amount=Decimal(100), period="month")
    h.budget(acme, amount=Decimal(5), period="day")
    day = budget_track(tenant=acme, span=overview_range(tenant=acme, preset="24h", now=NOW), now=NOW)
    month = budget_track(tenant=acme, span=overview_range(tenant=acme, preset="30d", now=NOW), now=NOW)
    assert day is not None and day.status.budget.period == "day"
    assert month is not None and month.status.budget.period == "month"
    assert (
        budget_track(
            tenant=h.tenant("none", name="None"), span=overview_range(tenant=acme, preset="24h", now=NOW)
        )
        is None
    )


def test_alerts_appear_as_markers_and_in_the_history_with_their_delivery(mailoutbox):
    acme = h.tenant()
    budget = h.budget(acme, amount=Decimal(20), thresholds=[50, 100], emails=["a@acme.test"])
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):  # too early to forecast
        h.spend(acme, "12")
        budget_alerts_check.delay(acme.pk)
    other = h.tenant("globex", name="Globex")
    h.budget(other, amount=Decimal(1), thresholds=[50])
    with time_machine.travel(datetime(2026, 3, 2, 11, 0, tzinfo=UTC), tick=False):
        h.spend(other, "1")
        budget_alerts_check.delay(other.pk)
    assert len(mailoutbox) == 2  # one each
    (entry,) = alert_history(tenant=acme)
    assert entry.alert.threshold == 50 and entry.alert.budget_id == budget.pk
    assert entry.recipients == ["a@acme.test"] and entry.email == "delivered" and entry.webhook == ""
    span = overview_range(tenant=acme, preset="30d", now=NOW)
    (marker,) = alert_markers(tenant=acme, span=span)
    assert marker.sent_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert span.key_of(marker.sent_at) == date(2026, 3, 2)
    assert alert_markers(tenant=acme, span=overview_range(tenant=acme, preset="24h", now=NOW)) == []


def test_a_webhook_that_gave_up_is_failed_in_the_history():
    acme = h.tenant()
    budget = h.budget(
        acme, amount=Decimal(20), thresholds=[50], emails=[], webhook_url="https://hooks.example/x"
    )
    alert = BudgetAlert.objects.create(
        budget=budget, period_start=NOW, kind="threshold", threshold=50, spend=10
    )
    WebhookAttempt.objects.create(alert=alert, url=budget.webhook_url, attempt=1, error="HTTP 500")
    (entry,) = alert_history(tenant=acme)
    assert (entry.email, entry.webhook, entry.webhook_error) == ("", "retrying", "HTTP 500")
    WebhookAttempt.objects.create(
        alert=alert, url=budget.webhook_url, attempt=2, error="HTTP 503", final=True
    )
    (entry,) = alert_history(tenant=acme)
    assert (entry.webhook, entry.webhook_error) == ("failed", "HTTP 503")
