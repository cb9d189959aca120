"""A hard budget stops spend below 100 % (admission refuses a call that cannot pay for its prompt),
so its 100 % alert is sent when it first refuses a call in a period: through the gateway, the usage
stream and the drain, never by a database write on the request path."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from django.conf import settings

from billing.budgets import budget_set
from billing.models import BudgetAlert, UsageRecord, WebhookAttempt
from tests.support.webhooks import LOOPBACK, Receiver

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the usage stream needs Redis"),
]

BODY = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Tell me everything. " * 5}]}


@pytest.fixture(autouse=True)
def _eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.TOLLHOUSE_ALERT_RETRY_SECONDS = 0
    settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK  # the receiver is on 127.0.0.1


def test_refused_calls_send_one_exhausted_alert_by_email_and_webhook(
    gateway_server, world, usage_rows, mailoutbox
):
    with Receiver([200]) as receiver:
        # $0.0001 a day: not even one prompt fits, so spend stays at 0 % while calls are refused.
        budget = budget_set(
            tenant=world.acme,
            usd=Decimal("0.0001"),
            period="day",
            emails=["finance@acme.test"],
            webhook_url=receiver.url,
        )
        with httpx.Client(base_url=gateway_server) as client:

            def calls(count: int) -> list[int]:
                headers = {"Authorization": f"Bearer {world.key}"}
                return [
                    client.post("/v1/chat/completions", json=BODY, headers=headers).status_code
                    for _ in range(count)
                ]

            assert calls(3) == [402, 402, 402]
            rows = usage_rows(3)
            assert [(r.status, r.error_type, r.refused_by_budget) for r in rows] == [
                (402, "budget_exceeded", budget.id)
            ] * 3
            assert calls(2) == [402, 402]
            usage_rows(5)
    [alert] = BudgetAlert.objects.filter(budget=budget)
    assert (alert.kind, alert.threshold, alert.spend) == ("threshold", 100, 0)
    [message] = mailoutbox
    assert message.to == ["finance@acme.test"] and "budget is exhausted, calls are refused" in message.subject
    assert len(receiver.received) == 1
    assert WebhookAttempt.objects.filter(alert=alert, delivered=True).count() == 1
    assert UsageRecord.objects.filter(refused_by_budget=budget.id).count() == 5
