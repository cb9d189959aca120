"""Budget alerts: a threshold crossed, or a forecast that the budget runs out before its period ends.

Sent once per budget, subject (the end user, for a budget of each end user), period and threshold,
however many workers check at once: an alert is a BudgetAlert row, and the row's unique constraint
is the claim. Whoever inserts it queues the email and the webhook once the row is committed; whoever
loses the race (IntegrityError) knows it was sent already (the Flip + sendalerts habit of
healthchecks). Deleting a BudgetAlert row would send its alert again.

Spend is read from the usage ledger in the database, the truth for alerts; the gateway's Redis
counters are for admission. Checks run after the usage drain commits a batch with a cost, or with a
call a budget refused, for a tenant that has budgets (`budget_checks_after_usage`), and every few
minutes for every such tenant (beat: `billing.tasks.budget_alerts_check_all`), which also catches
forecasts and missed triggers.

A hard budget's 100 % alert ("budget exhausted") also goes out the first time the budget refuses a
call in a period, even if spend never reaches 100 %: admission refuses a call that cannot pay for
its prompt, so spend stops below the amount (by up to one call's worst case). The refused call's
usage row names the budget (`UsageRecord.refused_by_budget`), so the check finds it in the ledger
like any spend, and the alert's claim is the same row a crossing of 100 % would make: once per
budget, subject and period, whichever comes first.

Delivery: one email per alert to each address of the budget (`budget_alert_email_send`), and a
signed JSON POST to the budget's webhook, each attempt recorded (`budget_alert_webhook_deliver`).
The Celery tasks in billing/tasks.py retry both with exponential backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.models import Tenant
from billing.models import Budget, BudgetAlert, UsageRecord, WebhookAttempt
from billing.periods import Window, window
from billing.pricing import dollars_to_nanos
from config import egress

logger = logging.getLogger(__name__)

# A forecast needs this much of the period behind it (percent): an hour into a month, one call
# extrapolates to nonsense.
FORECAST_MIN_ELAPSED_PERCENT = 10
# Tries per delivery (email, webhook), the first included.
MAX_ATTEMPTS = 5
WEBHOOK_TIMEOUT_SECONDS = 5.0

PERIOD_ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}
EVENT_TYPE = {BudgetAlert.Kind.THRESHOLD: "budget.threshold", BudgetAlert.Kind.FORECAST: "budget.forecast"}


def retry_delay(attempt: int) -> int:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): doubling each time."""
    return int(settings.TOLLHOUSE_ALERT_RETRY_SECONDS) << (attempt - 1)


# --- spend --------------------------------------------------------------------------------------------


def budget_spend(*, budgets: Sequence[Budget], windows: dict[str, Window]) -> dict[tuple[int, str], Decimal]:
    """What each budget's subjects spent in their period, from the usage ledger.

    Keyed by (budget id, subject): the subject is "" except for a budget of each end user, which has
    one entry per end user who spent anything. A few queries whatever the number of budgets: one
    aggregate per period and scope.
    """
    spend: dict[tuple[int, str], Decimal] = {}
    for period, span in windows.items():
        in_period = [budget for budget in budgets if budget.period == period]
        if not in_period:
            continue
        rows = UsageRecord.objects.filter(
            tenant_id=in_period[0].tenant_id, created_at__gte=span.start, created_at__lt=span.end
        ).order_by()
        tenant_budgets = [b for b in in_period if b.scope == Budget.Scope.TENANT]
        if tenant_budgets:
            total = rows.aggregate(total=Sum("cost", default=Decimal(0)))["total"]
            for budget in tenant_budgets:
                spend[(budget.id, "")] = total
        key_budgets = [b for b in in_period if b.scope == Budget.Scope.KEY]
        if key_budgets:
            by_key: dict[int | None, Decimal] = dict(
                rows.filter(api_key_id__in=[b.api_key_id for b in key_budgets])
                .values("api_key_id")
                .annotate(total=Sum("cost"))
                .values_list("api_key_id", "total")
            )
            for budget in key_budgets:
                spend[(budget.id, "")] = by_key.get(budget.api_key_id) or Decimal(0)
        user_budgets = [b for b in in_period if b.scope == Budget.Scope.END_USER]
        if user_budgets:
            # Calls without an end user belong to no end user's budget.
            users = rows.exclude(end_user="")
            if all(b.end_user for b in user_budgets):
                users = users.filter(end_user__in=[b.end_user for b in user_budgets])
            by_user: dict[str, Decimal] = dict(
                users.values("end_user").annotate(total=Sum("cost")).values_list("end_user", "total")
            )
            for budget in user_budgets:
                if budget.end_user:
                    spend[(budget.id, "")] = by_user.get(budget.end_user) or Decimal(0)
                else:
                    for end_user, total in by_user.items():
                        spend[(budget.id, end_user)] = total
    return spend


# --- checking -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueAlert:
    budget: Budget
    subject: str
    period_start: datetime
    kind: str
    threshold: int
    spend: Decimal
    forecast_date: date | None = None

    @property
    def key(self) -> tuple[int, str, datetime, str, int]:
        return (self.budget.id, self.subject, self.period_start, self.kind, self.threshold)


def _runs_out_on(*, amount: Decimal, spend: Decimal, span: Window, now: datetime) -> date | None:
    """The local date on which spend at the rate so far reaches `amount`, if that is before the
    period ends (and enough of the period has passed to say); else None."""
    if spend <= 0 or amount <= 0 or spend >= amount:
        return None
    # Aware arithmetic across zones is exact; within one zone Python would ignore DST changes.
    start, end = span.start.astimezone(UTC), span.end.astimezone(UTC)
    elapsed_us = (now - start) // timedelta(microseconds=1)
    length_us = (end - start) // timedelta(microseconds=1)
    if elapsed_us * 100 < length_us * FORECAST_MIN_ELAPSED_PERCENT:
        return None
    # Integer nano-dollars: the extrapolation is exact and never touches a float.
    runs_out_after_us = elapsed_us * dollars_to_nanos(amount) // dollars_to_nanos(spend)
    runs_out = start + timedelta(microseconds=runs_out_after_us)
    if runs_out >= end:
        return None
    return runs_out.astimezone(span.start.tzinfo).date()


def _due(budget: Budget, subject: str, spend: Decimal, span: Window, now: datetime) -> list[DueAlert]:
    if spend <= 0:
        return []
    due = [
        DueAlert(budget, subject, span.start, BudgetAlert.Kind.THRESHOLD, threshold, spend)
        for threshold in budget.thresholds
        if spend * 100 >= budget.amount * threshold
    ]
    runs_out_on = _runs_out_on(amount=budget.amount, spend=spend, span=span, now=now)
    if runs_out_on is not None:
        due.append(DueAlert(budget, subject, span.start, BudgetAlert.Kind.FORECAST, 0, spend, runs_out_on))
    return due


EXHAUSTED = 100  # the threshold of a hard budget's "budget exhausted" alert


def budget_refusals(*, budgets: Sequence[Budget], windows: dict[str, Window]) -> set[tuple[int, str]]:
    """(budget id, subject) of the hard budgets that refused a call in their current period (the
    subject is the end user for a budget of each end user, else ""). One query per period, on a
    partial index that holds only refused calls."""
    refused: set[tuple[int, str]] = set()
    for period, span in windows.items():
        in_period = {b.id: b for b in budgets if b.period == period and b.hard}
        if not in_period:
            continue
        rows = (
            UsageRecord.objects.filter(
                refused_by_budget__in=list(in_period), created_at__gte=span.start, created_at__lt=span.end
            )
            .order_by()
            .values_list("refused_by_budget", "end_user")
            .distinct()
        )
        for budget_id, end_user in rows:
            budget = in_period[int(budget_id or 0)]  # never NULL: the filter names the ids
            each_user = budget.scope == Budget.Scope.END_USER and not budget.end_user
            refused.add((budget.id, end_user if each_user else ""))
    return refused


def budget_alert_claim(due: DueAlert) -> BudgetAlert | None:
    """Record the alert and queue its delivery on commit; None if it was recorded already (by this
    check earlier, or by another worker racing this one: the unique constraint decides)."""
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                budget=due.budget,
                subject=due.subject,
                period_start=due.period_start,
                kind=due.kind,
                threshold=due.threshold,
                spend=due.spend,
                forecast_date=due.forecast_date,
                email_recipients=list(due.budget.emails or []),
            )
            transaction.on_commit(partial(_queue_delivery, alert.pk, due.budget))
    except IntegrityError:
        return None
    return alert


def _queue_delivery(alert_id: int, budget: Budget) -> None:
    """The alert is recorded: queue its email and webhook. A failure to queue is logged, and the
    alert stays recorded (sent at most once beats sent again by every check)."""
    from billing import tasks  # billing.tasks imports this module

    for wanted, task in (
        (budget.emails, tasks.budget_alert_email),
        (budget.webhook_url, tasks.budget_alert_webhook),
    ):
        if not wanted:
            continue
        try:
            task.delay(alert_id)
        except Exception:
            logger.exception("budget alert %s: %s not queued; it will not be sent", alert_id, task.name)


def budget_alerts_check(*, tenant_id: int, now: datetime | None = None) -> list[BudgetAlert]:
    """Check every budget of the tenant for its current period; returns the alerts this call sent."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return []
    now = now or timezone.now()
    budgets = list(Budget.objects.filter(tenant=tenant).order_by("id"))
    if not budgets:
        return []
    windows = {period: window(period, tenant.timezone, now) for period in {b.period for b in budgets}}
    spend = budget_spend(budgets=budgets, windows=windows)
    sent = set(
        BudgetAlert.objects.filter(
            budget__in=budgets, period_start__in=[span.start for span in windows.values()]
        ).values_list("budget_id", "subject", "period_start", "kind", "threshold")
    )
    by_id = {budget.id: budget for budget in budgets}
    due_now = [
        due
        for (budget_id, subject), total in spend.items()
        for due in _due(by_id[budget_id], subject, total, windows[by_id[budget_id].period], now)
    ]

    # A hard budget that refused a call is exhausted, wherever its spend stopped. Only the budgets
    # whose exhaustion alert this period may still be due are looked up.
    def may_be_due(budget: Budget) -> bool:
        if not budget.hard or EXHAUSTED not in budget.thresholds:
            return False
        if budget.scope == Budget.Scope.END_USER and not budget.end_user:
            return True  # one alert per end user: others may still be due
        start = windows[budget.period].start
        return (budget.id, "", start, BudgetAlert.Kind.THRESHOLD, EXHAUSTED) not in sent

    refusing = [budget for budget in budgets if may_be_due(budget)]
    for budget_id, subject in sorted(budget_refusals(budgets=refusing, windows=windows)):
        budget = by_id[budget_id]
        total = spend.get((budget_id, subject), Decimal(0))
        span = windows[budget.period]
        due_now.append(DueAlert(budget, subject, span.start, BudgetAlert.Kind.THRESHOLD, EXHAUSTED, total))
    alerts = []
    claimed = set()
    for due in due_now:
        if due.key in sent or due.key in claimed:
            continue
        claimed.add(due.key)
        alert = budget_alert_claim(due)
        if alert is not None:
            alerts.append(alert)
    if alerts:
        logger.info("budget alerts: %d sent for tenant %s", len(alerts), tenant_id)
    return alerts


def budget_tenant_ids() -> list[int]:
    """The tenants that have at least one budget (for the periodic check)."""
    return list(Budget.objects.order_by("tenant_id").values_list("tenant_id", flat=True).distinct())


# --- triggering after usage is written ------------------------------------------------------------


def _tenants_that_spent(events: Iterable[object]) -> set[int]:
    """Tenants with a call that cost money, or that one of their budgets refused."""
    tenant_ids = set()
    for event in events:
        if not isinstance(event, dict):
            continue
        tenant_id, cost = event.get("tenant_id"), event.get("cost_nanos")
        refused = type(event.get("refused_by_budget")) is int
        # Exactly what the gateway emits; anything odd is left to the periodic check.
        if type(tenant_id) is int and ((type(cost) is int and cost > 0) or refused):
            tenant_ids.add(tenant_id)
    return tenant_ids


def budget_checks_after_usage(*, events: Sequence[object], in_process: bool = False) -> None:
    """Queue a budget check, once the current transaction commits, for each tenant that has a
    budget and spent money in a batch of usage events just written.

    `in_process`: the batch came from the in-process buffer. Without a broker (the embedded
    default) the check, its emails and webhooks run eagerly, on a thread of their own (`_in_process`):
    never on the gateway's database thread, which a slow SMTP server or a dead webhook (5 s a try)
    would otherwise hold, and every key lookup with it. With a broker, that buffer is only Redis's fallback:
    Redis, the usual broker, is then likely unreachable, and a publish would hold up the gateway's
    database thread; the periodic check (every few minutes) catches these tenants up instead.

    Never raises: the usage is committed whatever happens here, and a failure must not make its
    writer take the batch for unwritten. A failure is logged; the periodic check catches up.
    """
    if in_process and not settings.CELERY_TASK_ALWAYS_EAGER:
        return
    tenant_ids = _tenants_that_spent(events)
    if not tenant_ids:
        return
    try:
        with_budgets = set(
            Budget.objects.filter(tenant_id__in=tenant_ids).values_list("tenant_id", flat=True).distinct()
        )
        for tenant_id in sorted(with_budgets):
            queue = partial(_in_process.submit, _check_in_process, tenant_id) if in_process else None
            transaction.on_commit(queue or partial(_queue_check, tenant_id))
    except Exception:
        logger.exception(
            "budget checks not queued for tenants %s; the periodic check will catch up", tenant_ids
        )


# Embedded mode's alert work, one at a time, off the threads that serve calls.
_in_process = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollhouse-alerts")


def _check_in_process(tenant_id: int) -> None:
    close_old_connections()
    try:
        _queue_check(tenant_id)
    finally:
        close_old_connections()


def in_process_idle(timeout: float = 10.0) -> bool:
    """Wait until the in-process alert work queued so far is done (for shutdown and tests)."""
    marker: Future[None] = _in_process.submit(lambda: None)
    try:
        marker.result(timeout=timeout)
    except TimeoutError:
        return False
    return True


def _queue_check(tenant_id: int) -> None:
    from billing import tasks  # billing.tasks imports this module

    try:
        tasks.budget_alerts_check.delay(tenant_id)
    except Exception:
        logger.exception("budget check not queued for tenant %s; the periodic check will catch up", tenant_id)


# --- what an alert says -----------------------------------------------------------------------------


def _usd(amount: Decimal) -> str:
    """$1,234.56 (cents, rounded down: a display never claims more was spent than was); below a
    dollar, up to six decimals so small budgets stay readable ($0.0042)."""
    places = Decimal("0.01") if abs(amount) >= 1 else Decimal("0.000001")
    shown = amount.quantize(places, rounding=ROUND_DOWN)
    cents = shown.quantize(Decimal("0.01"))
    return f"${cents if cents == shown else shown.normalize():,f}"


def _decimal_text(amount: Decimal) -> str:
    """An exact decimal for JSON: 100, 12.5, 0.000000001 (never 1E+2)."""
    return format(amount.normalize(), "f")


def _local_time(moment: datetime, span: Window) -> str:
    return moment.astimezone(span.start.tzinfo).strftime("%Y-%m-%d %H:%M %Z")


def _long_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def _change_url(budget_id: int) -> str:
    try:
        path = reverse("admin:billing_budget_change", args=[budget_id])
    except NoReverseMatch:  # the Budget admin is not registered (yet): the admin's index
        path = reverse("admin:index")
    return f"{settings.TOLLHOUSE_PUBLIC_URL}{path}"


def _describe_budget(budget: Budget, subject: str) -> str:
    if budget.scope == Budget.Scope.KEY and budget.api_key is not None:
        return f"key “{budget.api_key.name}” (th-{budget.api_key.prefix}…)"
    if budget.scope == Budget.Scope.END_USER:
        return f"end user “{subject or budget.end_user}”"
    return "whole tenant"


def alert_context(alert: BudgetAlert) -> dict[str, Any]:
    """Everything an email template needs, formatted (templates stay free of arithmetic)."""
    budget = alert.budget
    tenant = budget.tenant
    span = window(budget.period, tenant.timezone, alert.period_start)
    percent = int(alert.spend * 100 / budget.amount) if budget.amount > 0 else 0
    return {
        "tenant": tenant.name,
        "budget_label": _describe_budget(budget, alert.subject),
        "period": budget.period,
        "period_adjective": PERIOD_ADJECTIVE.get(budget.period, budget.period),
        "amount": _usd(budget.amount),
        "hard": budget.hard,
        "spend": _usd(alert.spend),
        "spend_percent": percent,
        "threshold": alert.threshold,
        # A hard budget's 100 % alert sent because it refused a call before spend reached it.
        "refusing": budget.hard and alert.threshold >= EXHAUSTED and alert.spend < budget.amount,
        "period_start": _local_time(span.start, span),
        "period_end": _local_time(span.end, span),
        "timezone": tenant.timezone,
        "runs_out_on": _long_date(alert.forecast_date) if alert.forecast_date else "",
        "change_url": _change_url(budget.id),
    }


def _load(alert_id: int) -> BudgetAlert | None:
    return BudgetAlert.objects.select_related("budget__tenant", "budget__api_key").filter(pk=alert_id).first()


# --- email --------------------------------------------------------------------------------------------


class AlertEmailFailed(Exception):
    """Some recipients could not be reached; `remaining` are the addresses to try again."""

    def __init__(self, remaining: list[str], cause: Exception) -> None:
        super().__init__(f"{len(remaining)} recipient(s) not reached: {type(cause).__name__}: {cause}"[:500])
        self.remaining = remaining


def alert_email_render(alert: BudgetAlert) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of an alert's email, from templates/billing/email/."""
    name = "budget_forecast" if alert.kind == BudgetAlert.Kind.FORECAST else "budget_alert"
    context = alert_context(alert)
    subject = render_to_string(f"billing/email/{name}_subject.txt", context)
    text = render_to_string(f"billing/email/{name}.txt", context)
    html = render_to_string(f"billing/email/{name}.html", context)
    # A header is one line, whatever a tenant's name holds.
    return " ".join(subject.split()), text, html


def budget_alert_email_send(*, alert_id: int, recipients: list[str] | None = None) -> int:
    """Email the alert to `recipients` (default: its budget's addresses), one message each, so that
    an address refused is retried alone and nobody gets a message twice. Returns how many went out;
    raises AlertEmailFailed naming the addresses still to try."""
    alert = _load(alert_id)
    if alert is None:  # its budget was deleted meanwhile
        return 0
    addresses = list(alert.budget.emails if recipients is None else recipients)
    if not addresses:
        return 0
    subject, text, html = alert_email_render(alert)
    failed: list[str] = []
    cause: Exception | None = None
    connection = get_connection()
    try:
        for address in addresses:
            message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [address])
            message.attach_alternative(html, "text/html")
            message.extra_headers["X-Tollhouse-Event"] = EVENT_TYPE[BudgetAlert.Kind(alert.kind)]
            try:
                connection.send_messages([message])
            except (smtplib.SMTPException, OSError) as exc:
                failed.append(address)
                cause = exc
    finally:
        connection.close()
    reached = [address for address in addresses if address not in failed]
    error = "" if cause is None else f"{type(cause).__name__}: {cause}"[:500]
    _email_outcome_record(alert, reached=reached, error=error)
    if cause is not None:
        raise AlertEmailFailed(failed, cause)
    return len(addresses)


def _email_outcome_record(alert: BudgetAlert, *, reached: list[str], error: str) -> None:
    """The alert history's account of the email: who it reached so far, the last failure."""
    delivered = list(alert.email_delivered or [])
    delivered += [address for address in reached if address not in delivered]
    BudgetAlert.objects.filter(pk=alert.pk).update(email_delivered=delivered, email_error=error)


def budget_alert_email_given_up(*, alert_id: int, recipients: list[str]) -> None:
    """The last attempt failed: the history says whom the email never reached."""
    BudgetAlert.objects.filter(pk=alert_id).update(email_failed=list(recipients))


# --- webhook ------------------------------------------------------------------------------------------


def alert_payload(alert: BudgetAlert, *, sent_at: datetime) -> dict[str, Any]:
    budget = alert.budget
    tenant = budget.tenant
    span = window(budget.period, tenant.timezone, alert.period_start)
    key = budget.api_key
    payload: dict[str, Any] = {
        "id": alert.pk,  # the same on every attempt: a receiver can ignore a repeat
        "type": EVENT_TYPE[BudgetAlert.Kind(alert.kind)],
        "tenant": {"id": tenant.pk, "slug": tenant.slug, "name": tenant.name},
        "budget": {
            "id": budget.pk,
            "scope": budget.scope,
            "api_key": None if key is None else {"id": key.pk, "name": key.name, "prefix": key.prefix},
            "end_user": alert.subject or budget.end_user or None,
            "period": budget.period,
            "amount": _decimal_text(budget.amount),
            "hard": budget.hard,
        },
        "threshold": alert.threshold if alert.kind == BudgetAlert.Kind.THRESHOLD else None,
        "spend": _decimal_text(alert.spend),
        "amount": _decimal_text(budget.amount),
        "period_start": span.start.isoformat(),
        "period_end": span.end.isoformat(),
        "sent_at": sent_at.astimezone(UTC).isoformat(),
    }
    if alert.forecast_date is not None:
        payload["runs_out_on"] = alert.forecast_date.isoformat()
    return payload


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: a receiver recomputes it with the
    tenant's secret, and refuses an old timestamp to stop replays."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _where(url: str) -> str:
    """A webhook URL fit for a log line: its scheme and host only (the path is often a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


@dataclass(frozen=True)
class Sent:
    """What one signed POST came to: the status (None if none came back), the error ("" for a 2xx),
    and whether the egress guard refused the address (final: a retry would be refused alike)."""

    status_code: int | None
    error: str
    refused: bool


def _signed_post(url: str, *, payload: dict[str, Any], event: str, secret: str) -> Sent:
    """POST a JSON payload signed with the tenant's secret, once, through the egress guard. The one
    way alerts and the console's test leave for a webhook."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Tollhouse-Webhook/1",
        "X-Tollhouse-Event": event,
        "X-Tollhouse-Signature": webhook_signature(secret=secret, timestamp=int(time.time()), body=body),
    }
    status_code: int | None = None
    error = ""
    refused = False
    try:
        # Through the egress guard (the address is checked again now: DNS can change), which
        # follows no redirect: the signed body goes where the operator said, nowhere else.
        status_code = egress.post(url, body=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS).status
    except egress.EgressRefused as exc:
        refused = True  # not a passing fault: no retry
        error = f"Refused: {exc}"[:500]
    except egress.SEND_ERRORS as exc:
        # The URL's path and query may be a secret (many services put a token there).
        error = f"{type(exc).__name__}: {exc}".replace(url, _where(url))[:500]
    if not error and not (status_code is not None and 200 <= status_code < 300):
        error = f"HTTP {status_code}"
    return Sent(status_code=status_code, error=error, refused=refused)


TEST_EVENT = "budget.test"


def budget_webhook_test_send(*, budget: Budget) -> tuple[int | None, str]:
    """The console's "send a test": a `budget.test` event to the budget's webhook, signed like an
    alert and sent the same way, recording nothing. Returns (status code, error; "" if delivered)."""
    if not budget.webhook_url:
        return None, "This budget has no webhook."
    tenant = budget.tenant
    payload = {
        "type": TEST_EVENT,
        "tenant": {"id": tenant.pk, "slug": tenant.slug, "name": tenant.name},
        "budget": {"id": budget.pk, "scope": budget.scope, "period": budget.period,
                   "amount": _decimal_text(budget.amount), "hard": budget.hard},
        "sent_at": timezone.now().astimezone(UTC).isoformat(),
    }  # fmt: skip
    sent = _signed_post(budget.webhook_url, payload=payload, event=TEST_EVENT, secret=tenant.webhook_secret())
    return sent.status_code, sent.error


def budget_alert_webhook_deliver(*, alert_id: int, attempt: int) -> WebhookAttempt | None:
    """POST the alert to its budget's webhook once and record the attempt. The attempt is final if
    it was delivered (any 2xx) or was number MAX_ATTEMPTS; None if there is nothing to send."""
    alert = _load(alert_id)
    if alert is None or not alert.budget.webhook_url:
        return None
    url = alert.budget.webhook_url
    sent_at = timezone.now()
    sent = _signed_post(
        url,
        payload=alert_payload(alert, sent_at=sent_at),
        event=EVENT_TYPE[BudgetAlert.Kind(alert.kind)],
        secret=alert.budget.tenant.webhook_secret(),
    )
    status_code, error = sent.status_code, sent.error
    delivered = status_code is not None and 200 <= status_code < 300
    final = delivered or sent.refused or attempt >= MAX_ATTEMPTS
    record = WebhookAttempt.objects.create(
        alert=alert,
        url=url,
        attempt=attempt,
        status_code=status_code,
        error="" if delivered else error,
        delivered=delivered,
        final=final,
    )
    if final and not delivered:
        logger.error(
            "budget alert %s: webhook to %s given up after %d attempts (last: %s)",
            alert.pk,
            _where(url),
            attempt,
            error,
        )
    return record
