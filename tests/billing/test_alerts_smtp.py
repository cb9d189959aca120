"""Budget alert emails through a real SMTP server on loopback (aiosmtpd), as production sends them."""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage as Message

import pytest
import time_machine
from aiosmtpd.controller import Controller

from billing.alerts import MAX_ATTEMPTS
from billing.models import BudgetAlert
from billing.tasks import budget_alerts_check
from tests.support import alerts as h
from tests.support.process import free_port

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "gone@acme.test"


class Mailbox:
    """An SMTP server's handler: keeps what it is sent, refuses one address as unknown."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.refusals = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == REFUSED:
            self.refusals += 1
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=email.policy.default))
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings):
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.TOLLHOUSE_ALERT_RETRY_SECONDS = 0
    yield mailbox
    controller.stop()


def parts(message: Message) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}


def test_each_recipient_gets_the_alert_over_smtp_once(smtp):
    acme = h.tenant()
    h.budget(acme, amount=Decimal(20), thresholds=[50], emails=["a@acme.test", "b@acme.test"])
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False):
        h.spend(acme, "12.34")
        budget_alerts_check.delay(acme.pk)
        budget_alerts_check.delay(acme.pk)
    assert sorted(to for to, _ in smtp.messages) == [["a@acme.test"], ["b@acme.test"]]
    _, message = smtp.messages[0]
    assert message["Subject"] == "[Tollhouse] Acme: 50% of the monthly budget reached ($12.34 of $20.00)"
    assert message["From"] == "Tollhouse <tollhouse@localhost>"
    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}
    for text in body.values():
        assert "$12.34" in text and "2026-04-01 00:00 UTC" in text


def test_an_address_the_server_refuses_is_retried_alone_then_given_up(smtp, caplog):
    acme = h.tenant()
    h.budget(acme, amount=Decimal(20), thresholds=[100], emails=[REFUSED, "a@acme.test"])
    with (
        caplog.at_level(logging.ERROR),
        time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), tick=False),
    ):
        h.spend(acme, "20")
        budget_alerts_check.delay(acme.pk)
    # The good address got its message once, although the one before it failed on every try.
    assert [to for to, _ in smtp.messages] == [["a@acme.test"]]
    assert smtp.refusals == MAX_ATTEMPTS
    [given_up] = [r.getMessage() for r in caplog.records if r.name == "billing.tasks"]
    assert f"email given up after {MAX_ATTEMPTS} attempts" in given_up and "1 recipient(s)" in given_up
    # The alert history says whom it reached and whom it never did.
    alert = BudgetAlert.objects.get()
    assert alert.email_recipients == [REFUSED, "a@acme.test"]
    assert alert.email_delivered == ["a@acme.test"]
    assert alert.email_failed == [REFUSED]
    assert "550" in alert.email_error
