"""Budget alert webhooks: signed JSON to a real local HTTP server, retried with backoff, every attempt
recorded (tasks run eagerly)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from billing.alerts import MAX_ATTEMPTS, retry_delay
from billing.budgets import budget_set
from billing.models import WebhookAttempt
from billing.tasks import budget_alerts_check
from tests.support import alerts as h
from tests.support.dns import fake_dns
from tests.support.process import free_port
from tests.support.webhooks import LOOPBACK, Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.TOLLHOUSE_ALERT_RETRY_SECONDS = 0
    settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK  # the receiver is on 127.0.0.1


@pytest.fixture
def receiver(request) -> Iterator[Receiver]:
    with Receiver(getattr(request, "param", [200])) as receiver:
        yield receiver


def alert_over(url: str, *, amount: str = "10", spent: str = "10", thresholds=(100,), **budget):
    acme = h.tenant()
    made = h.budget(
        acme, amount=Decimal(amount), thresholds=list(thresholds), webhook_url=url, emails=[], **budget
    )
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        h.spend(acme, spent)
        budget_alerts_check.delay(acme.pk)
        budget_alerts_check.delay(acme.pk)
    return acme, made


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    fields = dict(item.split("=", 1) for item in headers["x-tollhouse-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


def test_it_posts_a_signed_alert_that_verifies_with_the_tenants_secret(receiver):
    acme, budget = alert_over(receiver.url, amount="10", spent="12.5", thresholds=(80, 100), hard=False)
    assert len(receiver.received) == 2  # one per threshold, once each
    secret = acme.webhook_secret()
    for headers, body in receiver.received:
        assert verify(secret, headers, body)
        assert not verify(secret + "x", headers, body)
        assert headers["x-tollhouse-event"] == "budget.threshold"
        assert headers["content-type"] == "application/json"
    payload = json.loads(receiver.received[-1][1])
    assert payload["type"] == "budget.threshold" and payload["threshold"] in {80, 100}
    assert payload["tenant"] == {"id": acme.pk, "slug": "acme", "name": "Acme"}
    assert payload["budget"] == {
        "id": budget.pk,
        "scope": "tenant",
        "api_key": None,
        "end_user": None,
        "period": "month",
        "amount": "10",
        "hard": False,
    }
    assert (payload["spend"], payload["amount"]) == ("12.5", "10")
    assert (payload["period_start"], payload["period_end"]) == (
        "2026-03-01T00:00:00+00:00",
        "2026-04-01T00:00:00+00:00",
    )
    assert payload["sent_at"].startswith("2026-03-02T10:00:00")
    [a, b] = WebhookAttempt.objects.order_by("id")
    assert [(x.attempt, x.status_code, x.delivered, x.final, x.error) for x in (a, b)] == [
        (1, 200, True, True, "")
    ] * 2


def test_a_tampered_body_does_not_verify(receiver):
    acme, _ = alert_over(receiver.url)
    [(headers, body)] = receiver.received
    assert verify(acme.webhook_secret(), headers, body)
    assert not verify(acme.webhook_secret(), headers, body.replace(b'"10"', b'"99"'))


@pytest.mark.parametrize("receiver", [[500]], indirect=True)
def test_a_failing_endpoint_is_retried_then_given_up_and_every_attempt_recorded(receiver, caplog):
    with caplog.at_level(logging.INFO):
        acme, _ = alert_over(receiver.url)
    assert len(receiver.received) == MAX_ATTEMPTS
    attempts = list(WebhookAttempt.objects.order_by("attempt"))
    assert [(a.attempt, a.status_code, a.delivered, a.final) for a in attempts] == [
        (n, 500, False, n == MAX_ATTEMPTS) for n in range(1, MAX_ATTEMPTS + 1)
    ]
    assert attempts[0].error == "HTTP 500" and attempts[0].url == receiver.url
    [given_up] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"given up after {MAX_ATTEMPTS} attempts" in given_up and "http://127.0.0.1" in given_up
    # Neither the signing secret nor the URL's secret path reaches the log.
    assert acme.webhook_secret() not in caplog.text and "s3cr3t-path" not in caplog.text


@pytest.mark.parametrize("receiver", [[503, 200]], indirect=True)
def test_a_retry_that_gets_through_is_the_last(receiver):
    alert_over(receiver.url)
    assert len(receiver.received) == 2
    assert [(a.attempt, a.delivered, a.final) for a in WebhookAttempt.objects.order_by("attempt")] == [
        (1, False, False),
        (2, True, True),
    ]
    # The same alert each time (a receiver can drop a repeat by its id), each signed afresh.
    first, second = (json.loads(body) for _, body in receiver.received)
    assert first["id"] == second["id"]


def test_an_endpoint_nobody_listens_on_is_recorded_as_an_error():
    url = f"http://127.0.0.1:{free_port()}/hook"
    alert_over(url)
    attempts = list(WebhookAttempt.objects.order_by("attempt"))
    assert len(attempts) == MAX_ATTEMPTS and attempts[-1].final
    assert all(a.status_code is None and a.error.startswith("ConnectError") for a in attempts)


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.0.0.5", "169.254.169.254"])
def test_a_name_that_resolves_to_a_private_address_when_sent_is_refused_once(monkeypatch, settings, answer):
    """Checked when set (a public address then) and again when sent (DNS changed): not sent, one
    final attempt that says why, no retry."""
    settings.TOLLHOUSE_WEBHOOK_ALLOW = ()
    with Receiver([200]) as receiver:
        url = f"http://hooks.acme.test:{receiver.server.server_address[1]}/budget"
        fake_dns(monkeypatch, {"hooks.acme.test": ["93.184.215.14"]})
        acme = h.tenant()
        budget = budget_set(tenant=acme, usd=Decimal(10), period="month", thresholds=[100], webhook_url=url)
        fake_dns(monkeypatch, {"hooks.acme.test": [answer]})
        with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
            h.spend(acme, "10")
            budget_alerts_check.delay(acme.pk)
    assert receiver.received == []
    [attempt] = WebhookAttempt.objects.filter(alert__budget=budget)
    assert (attempt.attempt, attempt.status_code, attempt.delivered, attempt.final) == (1, None, False, True)
    assert attempt.error.startswith("Refused: hooks.acme.test resolves to a ")
    assert f"({answer}): webhooks go only to public addresses" in attempt.error


def test_a_loopback_receiver_is_refused_when_sent_unless_allowed(settings):
    with Receiver([200]) as receiver:
        acme, _ = alert_over(receiver.url)  # set while allowed (the module's fixture)
        assert len(receiver.received) == 1
        settings.TOLLHOUSE_WEBHOOK_ALLOW = ()
        with time_machine.travel(datetime(2026, 4, 2, 10, 0, tzinfo=UTC), tick=False):
            h.spend(acme, "10")  # April: a new period, a new 100 % alert
            budget_alerts_check.delay(acme.pk)
    assert len(receiver.received) == 1
    refused = WebhookAttempt.objects.filter(delivered=False).get()
    assert refused.final and refused.error == (
        "Refused: 127.0.0.1 is a loopback address: webhooks go only to public addresses unless "
        "TOLLHOUSE_WEBHOOK_ALLOW lists it."
    )


def test_the_backoff_doubles_from_the_configured_delay(settings):
    settings.TOLLHOUSE_ALERT_RETRY_SECONDS = 30
    assert [retry_delay(n) for n in range(1, MAX_ATTEMPTS)] == [30, 60, 120, 240]
