"""billing.alerts / billing.tasks.budget_alerts_check: thresholds, forecasts, periods, triggers (emails
in mail.outbox; tasks run eagerly)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import connection

from billing import alerts
from billing.alerts import DueAlert, budget_alert_claim
from billing.models import BudgetAlert
from billing.tasks import budget_alerts_check, budget_alerts_check_all
from billing.usage import FIELD, BufferSink, stream_key, usage_drain
from tests.support import alerts as h

pytestmark = pytest.mark.django_db(transaction=True)

AUCKLAND = ZoneInfo("Pacific/Auckland")


@pytest.fixture(autouse=True)
def _eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.TOLLHOUSE_ALERT_RETRY_SECONDS = 0
    settings.TOLLHOUSE_PUBLIC_URL = "https://tollhouse.example"


def check(tenant, times: int = 1) -> None:
    for _ in range(times):
        budget_alerts_check.delay(tenant.pk)


def thresholds_sent(budget) -> list[int]:
    return sorted(a.threshold for a in budget.alerts.filter(kind="threshold"))


def test_it_alerts_each_threshold_once_per_period_to_every_recipient(mailoutbox):
    acme = h.tenant()
    budget = h.budget(acme, amount=Decimal(100), emails=["a@acme.test", "b@acme.test"])
    # The 2nd of a month: too early in the period for a forecast.
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        h.spend(acme, "49.99")
        check(acme, 3)
        assert thresholds_sent(budget) == [] and mailoutbox == []

        h.spend(acme, "5.01")
        check(acme, 3)
        assert thresholds_sent(budget) == [50]
        assert sorted(m.to[0] for m in mailoutbox) == ["a@acme.test", "b@acme.test"]
        assert all(len(m.to) == 1 for m in mailoutbox)

        h.spend(acme, "50")  # 105: crosses 80 and 100 at once
        check(acme, 3)
    assert thresholds_sent(budget) == [50, 80, 100]
    assert len(mailoutbox) == 6  # three thresholds, two recipients, once each
    message = next(m for m in mailoutbox if "100%" in m.subject and m.to == ["a@acme.test"])
    assert message.subject == "[Tollhouse] Acme: 100% of the monthly budget reached ($105.00 of $100.00)"
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    link = f"https://tollhouse.example/admin/billing/budget/{budget.pk}/change/"
    for body in (message.body, html):
        assert "Acme" in body and "$105.00" in body and "$100.00 per month" in body
        assert "hard" in body and "refused until it resets" in body
        assert "2026-04-01 00:00 UTC" in body  # when the period ends
        assert "2026-03-01 00:00 UTC" in body
    assert f'href="{link}"' in html and link in message.body  # where the budget can be changed
    assert message.extra_headers["X-Tollhouse-Event"] == "budget.threshold"


def test_a_soft_budget_says_so_and_small_amounts_stay_readable(mailoutbox):
    acme = h.tenant()
    h.budget(acme, amount=Decimal("0.01"), hard=False, thresholds=[100])
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        h.spend(acme, "0.0123")
        check(acme)
    [message] = mailoutbox
    assert "$0.0123" in message.body and "$0.01 per month" in message.body
    assert "soft (alerts only)" in message.body and "refused" not in message.body


def test_the_period_resets_at_midnight_in_the_tenants_time_zone_not_utc(mailoutbox):
    acme = h.tenant(tz="Pacific/Auckland")
    budget = h.budget(acme, amount=Decimal(10), period="day", thresholds=[50])
    # 23:59 and 00:01 in Auckland (UTC+12 in June) are 11:59 and 12:01 of the same UTC day.
    before_midnight = datetime(2026, 6, 10, 23, 59, tzinfo=AUCKLAND)
    after_midnight = datetime(2026, 6, 11, 0, 1, tzinfo=AUCKLAND)
    assert before_midnight.astimezone(UTC).date() == after_midnight.astimezone(UTC).date()

    with time_machine.travel(before_midnight, tick=False):
        h.spend(acme, "6")
        check(acme, 2)
    assert len(mailoutbox) == 1
    assert "2026-06-11 00:00 NZST" in mailoutbox[0].body  # the period ends at the tenant's midnight

    with time_machine.travel(after_midnight, tick=False):
        check(acme)
        assert len(mailoutbox) == 1  # a new day: nothing spent in it yet
        h.spend(acme, "6")
        check(acme, 2)
    assert len(mailoutbox) == 2
    assert "2026-06-12 00:00 NZST" in mailoutbox[1].body
    starts = sorted(a.period_start.astimezone(AUCKLAND) for a in budget.alerts.all())
    assert starts == [datetime(2026, 6, 10, tzinfo=AUCKLAND), datetime(2026, 6, 11, tzinfo=AUCKLAND)]


def test_it_forecasts_the_day_the_budget_runs_out_once_per_period(mailoutbox):
    acme = h.tenant()
    budget = h.budget(acme, amount=Decimal(100), thresholds=[90])
    # 9 of April's 30 days gone, $40 spent: $100 is reached after 22.5 days, on Thursday the 23rd.
    with time_machine.travel(datetime(2026, 4, 10, tzinfo=UTC), tick=False):
        h.spend(acme, "40", at=datetime(2026, 4, 5, tzinfo=UTC))
        check(acme, 3)
    [alert] = budget.alerts.all()
    assert (alert.kind, alert.forecast_date, alert.spend) == ("forecast", datetime(2026, 4, 23).date(), 40)
    [message] = mailoutbox
    assert message.subject == (
        "[Tollhouse] Acme: at this rate the monthly budget runs out on Thursday 23 April 2026"
    )
    assert "Thursday 23 April 2026" in message.alternatives[0][0]
    assert message.extra_headers["X-Tollhouse-Event"] == "budget.forecast"

    with time_machine.travel(datetime(2026, 4, 12, tzinfo=UTC), tick=False):
        h.spend(acme, "20")
        check(acme)
    assert len(mailoutbox) == 1  # at most one forecast per period

    with time_machine.travel(datetime(2026, 5, 10, tzinfo=UTC), tick=False):
        h.spend(acme, "40")
        check(acme)
    assert len(mailoutbox) == 2  # and again in the next one


@pytest.mark.parametrize(
    ("now", "spent", "why"),
    [
        (datetime(2026, 4, 3, tzinfo=UTC), "49", "under 10% of the period gone"),
        (datetime(2026, 4, 10, tzinfo=UTC), "29", "the rate fits the budget"),
        (datetime(2026, 4, 10, tzinfo=UTC), "100", "already spent: the 100% alert says it"),
    ],
)
def test_it_does_not_forecast_when(mailoutbox, now, spent, why):
    acme = h.tenant()
    budget = h.budget(acme, amount=Decimal(100), thresholds=[500], hard=False)
    with time_machine.travel(now, tick=False):
        h.spend(acme, spent)
        check(acme)
    assert not budget.alerts.exists(), why


def test_each_scope_counts_its_own_calls(mailoutbox):
    from accounts.services import api_key_issue

    acme = h.tenant()
    ci, web = (api_key_issue(tenant=acme, name=n).api_key for n in ("ci-bot", "web"))
    key_budget = h.budget(
        acme, scope="key", api_key=ci, amount=Decimal(10), thresholds=[100], emails=["k@x.test"]
    )
    one_user = h.budget(
        acme, scope="end_user", end_user="carol", period="day", amount=Decimal(10), thresholds=[100]
    )
    each_user = h.budget(acme, scope="end_user", period="week", amount=Decimal(5), thresholds=[100])
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        h.spend(acme, "9", api_key_id=web.pk, end_user="dave")  # dave: over 5; not the ci key's
        h.spend(acme, "9", api_key_id=ci.pk, end_user="erin")  # erin: over 5; ci key at 9 of 10
        h.spend(acme, "3", api_key_id=ci.pk, end_user="carol")  # ci key 12: over; carol 3: under 5
        h.spend(acme, "50")  # no end user: nobody's end-user budget
        check(acme, 2)
    assert [(a.subject, a.spend) for a in key_budget.alerts.all()] == [("", Decimal(12))]
    assert not one_user.alerts.exists()
    assert sorted((a.subject, a.spend) for a in each_user.alerts.all()) == [("dave", 9), ("erin", 9)]
    bodies = {m.to[0]: m.body for m in mailoutbox if m.to == ["k@x.test"]}
    assert f"key “ci-bot” (th-{ci.prefix}…)" in bodies["k@x.test"]
    assert any("end user “dave”" in m.body for m in mailoutbox)


def test_it_escapes_what_a_tenant_wrote_in_html_and_keeps_it_in_text(mailoutbox):
    acme = h.tenant(name='<img src=x onerror="alert(1)"> & Sons\nBcc: victim@example.com')
    h.budget(acme, amount=Decimal(1), thresholds=[100])
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        h.spend(acme, "1")
        check(acme)
    [message] = mailoutbox
    html = message.alternatives[0][0]
    assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; Sons" in html
    assert '<img src=x onerror="alert(1)"> & Sons' in message.body
    assert "\n" not in message.subject and message.to == ["finance@acme.test"]
    assert message.message()["Bcc"] is None


def test_two_workers_racing_send_each_alert_once(mailoutbox):
    acme = h.tenant()
    budget = h.budget(acme, amount=Decimal(10), emails=["a@acme.test", "b@acme.test"])
    h.spend(acme, "10", at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    start = threading.Barrier(4)
    errors = []

    def worker() -> None:
        try:
            start.wait()
            budget_alerts_check(acme.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    # time_machine's clock is the process's: every thread sees it.
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert thresholds_sent(budget) == [50, 80, 100]
    assert len(mailoutbox) == 6


def test_a_claim_that_lost_the_race_sends_nothing(mailoutbox):
    acme = h.tenant()
    budget = h.budget(acme)
    due = DueAlert(budget, "", datetime(2026, 3, 1, tzinfo=UTC), "threshold", 50, Decimal(60))
    assert budget_alert_claim(due) is not None
    assert budget_alert_claim(due) is None  # the unique constraint: already sent
    assert BudgetAlert.objects.count() == 1 and len(mailoutbox) == 1


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs Redis")
def test_the_drain_queues_a_check_for_tenants_with_budgets_that_spent(mailoutbox):
    from config.redis import sync_client

    acme, globex = h.tenant(), h.tenant("globex", name="Globex")
    budget = h.budget(acme, amount=Decimal(10), thresholds=[100])
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        for event in (h.usage_event(acme, "6"), h.usage_event(globex, "60"), h.usage_event(acme, "4")):
            sync_client().xadd(stream_key(), {FIELD: orjson.dumps(event)})
        assert usage_drain(claim_idle_ms=600_000) == 3
    assert thresholds_sent(budget) == [100] and len(mailoutbox) == 1


def test_the_in_process_buffer_queues_a_check_after_its_batch_is_written(mailoutbox):
    acme = h.tenant()
    budget = h.budget(acme, amount=Decimal(10), thresholds=[100])

    async def scenario() -> None:
        sink = BufferSink(flush_seconds=3600)
        await sink.emit(h.usage_event(acme, "11"))
        assert await sink.flush() == 1

    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        asyncio.run(scenario())
        assert alerts.in_process_idle()
    assert thresholds_sent(budget) == [100] and len(mailoutbox) == 1


def test_the_in_process_buffer_never_waits_for_the_alerts_it_queues(monkeypatch, mailoutbox):
    """Embedded mode sends emails and webhooks eagerly; a slow one must not hold the flush (which
    runs on the gateway's database thread, shared with every key lookup)."""
    acme = h.tenant()
    h.budget(acme, amount=Decimal(10), thresholds=[100])
    real = alerts._queue_check

    def slow(tenant_id: int) -> None:
        time.sleep(1.5)
        real(tenant_id)

    monkeypatch.setattr(alerts, "_queue_check", slow)

    async def scenario() -> float:
        sink = BufferSink(flush_seconds=3600)
        await sink.emit(h.usage_event(acme, "11"))
        started = time.monotonic()
        assert await sink.flush() == 1
        return time.monotonic() - started

    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=True):
        assert asyncio.run(scenario()) < 1.0
        assert alerts.in_process_idle()
    assert len(mailoutbox) == 1


def test_the_periodic_check_catches_what_no_trigger_saw(mailoutbox):
    assert django_settings.CELERY_BEAT_SCHEDULE["budget-alerts"] == {
        "task": "billing.tasks.budget_alerts_check_all",
        "schedule": 300.0,
    }
    acme, globex = h.tenant(), h.tenant("globex", name="Globex")
    h.budget(acme, amount=Decimal(10), thresholds=[100])
    h.budget(globex, amount=Decimal(10), thresholds=[100], emails=["g@globex.test"])
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        h.spend(acme, "10")  # straight into the ledger: no check was queued
        h.spend(globex, "10")
        assert mailoutbox == []
        budget_alerts_check_all.delay()
    assert sorted(m.to[0] for m in mailoutbox) == ["finance@acme.test", "g@globex.test"]


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs Redis")
def test_with_a_broker_the_drain_publishes_one_check_per_tenant_with_budgets_and_the_buffer_none(settings):
    """The in-process buffer is then Redis's fallback: it must not publish (Redis is likely down)."""
    from config.redis import sync_client

    settings.CELERY_TASK_ALWAYS_EAGER = False
    acme, globex = h.tenant(), h.tenant("globex", name="Globex")
    h.budget(acme)
    queue = sync_client()  # the broker is the same Redis database in the tests
    for event in (h.usage_event(acme, "1"), h.usage_event(acme, "2"), h.usage_event(globex, "3")):
        queue.xadd(stream_key(), {FIELD: orjson.dumps(event)})
    usage_drain(claim_idle_ms=600_000)
    [message] = queue.lrange("celery", 0, -1)
    assert orjson.loads(message)["headers"]["task"] == "billing.tasks.budget_alerts_check"
    assert orjson.loads(message)["headers"]["argsrepr"] == f"({acme.pk},)"

    async def scenario() -> None:
        sink = BufferSink(flush_seconds=3600)
        await sink.emit(h.usage_event(acme, "5"))
        assert await sink.flush() == 1

    asyncio.run(scenario())
    assert queue.llen("celery") == 1


def refused(tenant, budget, *, at=None, **overrides) -> None:
    """A call the budget refused (402), as the gateway records it: no cost, the budget named."""
    h.spend(
        tenant, "0", at=at, status=402, error_type="budget_exceeded", refused_by_budget=budget.pk, **overrides
    )


def test_a_hard_budget_that_refuses_a_call_sends_its_100_percent_alert_once_per_period(mailoutbox, settings):
    from billing.models import WebhookAttempt
    from tests.support.webhooks import LOOPBACK, Receiver

    settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK  # the receiver is on 127.0.0.1
    acme = h.tenant()
    with Receiver([204]) as receiver:
        budget = h.budget(acme, amount=Decimal(10), webhook_url=receiver.url)
        with time_machine.travel(datetime(2026, 3, 20, 10, 0, tzinfo=UTC), tick=False):
            h.spend(acme, "8.90")  # 89 %: admission refuses what the last $1.10 cannot pay for
            check(acme)
            assert thresholds_sent(budget) == [50, 80]
            mailoutbox.clear()
            hooks = len(receiver.received)  # 50, 80 and a forecast
            for _ in range(3):
                refused(acme, budget)
                check(acme, 2)
        assert thresholds_sent(budget) == [50, 80, 100]
        [message] = mailoutbox
        assert message.subject == (
            "[Tollhouse] Acme: the monthly budget is exhausted, calls are refused ($8.90 of $10.00)"
        )
        assert "exhausted: it refused a call it could not pay for" in message.body
        assert "refused until it resets" in message.body
        assert len(receiver.received) == hooks + 1
        [(_, body)] = receiver.received[-1:]
        payload = orjson.loads(body)
        assert (payload["threshold"], payload["spend"], payload["amount"]) == (100, "8.9", "10")
        assert WebhookAttempt.objects.filter(alert__threshold=100).count() == 1
        # The next month: refused again, alerted again, once.
        with time_machine.travel(datetime(2026, 4, 1, 9, 0, tzinfo=UTC), tick=False):
            refused(acme, budget)
            refused(acme, budget)
            check(acme, 2)
        assert [(a.threshold, a.period_start.month) for a in budget.alerts.order_by("created_at")][-1] == (
            100,
            4,
        )
        assert thresholds_sent(budget) == [50, 80, 100, 100]
        assert len(mailoutbox) == 2 and len(receiver.received) == hooks + 2
        assert "($0.00 of $10.00)" in mailoutbox[1].subject


def test_a_refusal_alerts_only_the_budget_that_refused_and_each_end_user_once():
    acme = h.tenant()
    whole = h.budget(acme, amount=Decimal(100))
    each_user = h.budget(acme, scope="end_user", end_user="", amount=Decimal(1), period="day")
    soft = h.budget(acme, scope="end_user", end_user="carol", amount=Decimal(1), period="week", hard=False)
    quiet = h.budget(
        acme, scope="end_user", end_user="dave", amount=Decimal(1), period="month", thresholds=[50]
    )
    with time_machine.travel(datetime(2026, 3, 20, 10, 0, tzinfo=UTC), tick=False):
        for user in ("alice", "alice", "bob"):
            refused(acme, each_user, end_user=user)
        refused(acme, soft, end_user="carol")  # cannot happen (soft budgets refuse nothing): ignored
        refused(acme, quiet, end_user="dave")  # no 100 % threshold: nothing asked for
        check(acme, 2)
    assert sorted((a.subject, a.threshold) for a in each_user.alerts.all()) == [("alice", 100), ("bob", 100)]
    assert not whole.alerts.exists() and not soft.alerts.exists() and not quiet.alerts.exists()


def test_the_drain_queues_a_check_for_a_refusal_that_cost_nothing(mailoutbox):
    from config.redis import sync_client

    acme = h.tenant()
    budget = h.budget(acme, amount=Decimal(10), thresholds=[100])
    event = h.usage_event(acme, "0", status=402, error_type="budget_exceeded", refused_by_budget=budget.pk)
    sync_client().xadd(stream_key(), {FIELD: orjson.dumps(event)})
    assert usage_drain(claim_idle_ms=600_000) == 1
    assert thresholds_sent(budget) == [100] and len(mailoutbox) == 1
