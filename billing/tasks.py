"""Celery tasks of billing: thin wrappers over billing.usage / billing.services / billing.alerts."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.db import InterfaceError, OperationalError

from billing import alerts
from billing.usage import usage_drain as drain

logger = logging.getLogger(__name__)


_DOWN_LOG_SECONDS = 60.0
_down_logged_at: float | None = None  # monotonic time this worker last said the database is down


@shared_task(name="billing.tasks.usage_drain", ignore_result=True)
def usage_drain() -> int:
    """Beat, every TOLLHOUSE_USAGE_DRAIN_SECONDS. While the database is unreachable the events wait
    in the stream (pending, claimed again later): one line a minute says so, not a traceback a run."""
    global _down_logged_at
    try:
        written = drain()
    except (OperationalError, InterfaceError) as exc:
        now = time.monotonic()
        if _down_logged_at is None or now - _down_logged_at >= _DOWN_LOG_SECONDS:
            _down_logged_at = now
            logger.error(
                "usage drain: the database is unreachable (%s); events wait in Redis",
                str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__,
            )
        return 0
    if _down_logged_at is not None:
        _down_logged_at = None
        logger.info("usage drain: the database is reachable again")
    return written


@shared_task(name="billing.tasks.counters_reconcile", ignore_result=True)
def counters_reconcile() -> int:
    """Beat: re-derive the gateways' budget and credit counters from the ledger; logs each repair."""
    from billing.reconcile import counters_reconcile as reconcile

    return len(reconcile(fix=True))


@shared_task(name="billing.tasks.usage_purge", ignore_result=True)
def usage_purge() -> int:
    """Beat: delete raw usage rows older than TOLLHOUSE_USAGE_RETENTION_DAYS, in bounded batches."""
    from billing.retention import usage_purge as purge

    return purge()


@shared_task(name="billing.tasks.usage_reconcile", ignore_result=True)
def usage_reconcile() -> int:
    """Beat (daily): raw rows vs rollups vs budget counters vs credit ledger over the last two
    days; each difference is logged, nothing is changed, and the run is recorded (ReconcileRun: the
    operator overview shows the last one). Returns how many differences."""
    from billing.reconcile import reconcile_run_save
    from billing.reconcile import usage_reconcile as reconcile

    began = time.perf_counter()
    differences = reconcile(since=None, fix=False)
    reconcile_run_save(
        since=None,
        differences=differences,
        fixed=False,
        source="task",
        seconds=time.perf_counter() - began,
    )
    for difference in differences:
        logger.error("usage reconcile: %s", difference)
    if not differences:
        logger.info("usage reconcile: raw rows, rollups, counters and credit ledger agree")
    return len(differences)


@shared_task(name="billing.tasks.budget_alerts_check", ignore_result=True)
def budget_alerts_check(tenant_id: int) -> int:
    """Send the alerts due for the tenant's budgets; returns how many."""
    return len(alerts.budget_alerts_check(tenant_id=tenant_id))


@shared_task(name="billing.tasks.budget_alerts_check_all", ignore_result=True)
def budget_alerts_check_all() -> int:
    """Beat: a check for every tenant with a budget (forecasts, and checks a trigger missed)."""
    tenant_ids = alerts.budget_tenant_ids()
    for tenant_id in tenant_ids:
        budget_alerts_check.delay(tenant_id)
    return len(tenant_ids)


# Alert deliveries retry by queueing their next attempt themselves, with the attempt number as an
# argument, rather than with `self.retry`: run eagerly (the embedded default, where
# CELERY_TASK_EAGER_PROPAGATES is on), `self.retry` raises its Retry out of the caller instead of
# trying again. `apply_async(countdown=...)` waits in a worker and runs at once when eager.


@shared_task(name="billing.tasks.budget_alert_email", ignore_result=True)
def budget_alert_email(alert_id: int, recipients: list[str] | None = None, attempt: int = 1) -> int:
    """Email an alert; the addresses a try could not reach are tried again, with backoff."""
    try:
        return alerts.budget_alert_email_send(alert_id=alert_id, recipients=recipients)
    except alerts.AlertEmailFailed as exc:
        if attempt >= alerts.MAX_ATTEMPTS:
            logger.error("budget alert %s: email given up after %d attempts (%s)", alert_id, attempt, exc)
            alerts.budget_alert_email_given_up(alert_id=alert_id, recipients=exc.remaining)
            return 0
        budget_alert_email.apply_async(
            (alert_id, exc.remaining, attempt + 1), countdown=alerts.retry_delay(attempt)
        )
        return 0


@shared_task(name="billing.tasks.budget_alert_webhook", ignore_result=True)
def budget_alert_webhook(alert_id: int, attempt: int = 1) -> bool:
    """POST an alert to its budget's webhook; tried again with backoff until delivered or
    MAX_ATTEMPTS attempts were made, each recorded as a WebhookAttempt."""
    record = alerts.budget_alert_webhook_deliver(alert_id=alert_id, attempt=attempt)
    if record is None or record.delivered or record.final:
        return record is not None and record.delivered
    budget_alert_webhook.apply_async((alert_id, attempt + 1), countdown=alerts.retry_delay(attempt))
    return False
