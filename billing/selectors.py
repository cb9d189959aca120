"""Reads of billing data, always scoped to a tenant: prices for the gateway; budgets, alerts, the
usage explorer, its CSV export and the credit ledger for the console (the overview's charts are in
billing/overview.py)."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from accounts.models import ApiKey, Tenant
from billing import periods
from billing.alerts import FORECAST_MIN_ELAPSED_PERCENT
from billing.models import (
    Budget,
    BudgetAlert,
    CreditEntry,
    ModelPrice,
    RedemptionCode,
    UsageHourly,
    UsageHourlyKey,
    UsageHourlySession,
    UsageHourlyTenant,
    UsageRecord,
)
from billing.overview import Range, overview_range, traffic_series
from billing.periods import Window, window
from billing.pricing import PriceNanos
from billing.rollups import hour_of

# The period a key's spend is shown for when it has no budget of its own; else its budget's
# (the longest one, when it has several).
_PERIOD_ORDER = ("month", "week", "day")


@dataclass(frozen=True)
class KeyPeriodUsage:
    """A key's spend and calls in its current period, and when it was last used."""

    period: str  # day | week | month: the key's budget's, else the calendar month
    start: datetime  # the period's start (local midnight, tenant's zone)
    spend: Decimal
    requests: int
    budget: Budget | None
    last_used: datetime | None


def _hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def key_usage_this_period(
    *, tenant: Tenant, api_keys: Sequence[ApiKey], now: datetime | None = None
) -> dict[int, KeyPeriodUsage]:
    """For each of `tenant`'s `api_keys`: spend and requests in its current period, from the hourly
    rollups (a period starting at a local midnight that is not a whole UTC hour counts from the
    hour it falls in, as billing/overview.py), and the moment of its last call (the last rollup
    hour with calls, then the latest raw row in that hour; the hour itself once raw rows are purged).
    A few queries whatever the number of keys or rows."""
    now = now or timezone.now()
    keys = [key for key in api_keys if key.tenant_id == tenant.pk]
    ids = [key.pk for key in keys]
    budgets: dict[int, Budget] = {}
    for budget in Budget.objects.filter(tenant=tenant, scope=Budget.Scope.KEY, api_key_id__in=ids):
        assert budget.api_key_id is not None
        held = budgets.get(budget.api_key_id)
        if held is None or _PERIOD_ORDER.index(budget.period) < _PERIOD_ORDER.index(held.period):
            budgets[budget.api_key_id] = budget
    period_of = {pk: budgets[pk].period if pk in budgets else "month" for pk in ids}
    sums: dict[int, tuple[Decimal, int]] = {}
    windows: dict[str, periods.Window] = {}
    for period in sorted(set(period_of.values())):
        window = windows[period] = periods.window(period, tenant.timezone, now)
        rows = (
            UsageHourly.objects.filter(
                tenant_id=tenant.pk,
                hour__gte=_hour_floor(window.start),
                hour__lt=window.end,
                api_key_id__in=[pk for pk in ids if period_of[pk] == period],
            )
            .values("api_key_id")
            .annotate(spend=Sum("cost"), calls=Sum("requests"))
        )
        for row in rows:
            sums[row["api_key_id"]] = (Decimal(row["spend"] or 0), int(row["calls"] or 0))
    # Per key, the last rollup hour with calls (an index probe each: usagehourly_key_hour), then the
    # latest raw row in that hour (a one-hour range of the tenant's rows): one query for all keys.
    last_hour = UsageHourly.objects.filter(tenant_id=tenant.pk, api_key_id=OuterRef("pk")).order_by("-hour")
    in_that_hour = UsageRecord.objects.filter(
        tenant_id=tenant.pk,
        api_key_id=OuterRef("pk"),
        created_at__gte=OuterRef("last_hour"),
        created_at__lt=OuterRef("last_hour") + timedelta(hours=1),
    ).order_by("-created_at")
    last_used: dict[int, datetime | None] = {
        pk: exact or hour
        for pk, hour, exact in ApiKey.objects.filter(pk__in=ids)
        .annotate(last_hour=Subquery(last_hour.values("hour")[:1]))
        .annotate(last_call=Subquery(in_that_hour.values("created_at")[:1]))
        .values_list("pk", "last_hour", "last_call")
    }
    result = {}
    for pk in ids:
        spend, calls = sums.get(pk, (Decimal(0), 0))
        result[pk] = KeyPeriodUsage(
            period=period_of[pk],
            start=windows[period_of[pk]].start,
            spend=spend,
            requests=calls,
            budget=budgets.get(pk),
            last_used=last_used.get(pk),
        )
    return result


def price_schedule() -> dict[str, list[tuple[datetime, PriceNanos]]]:
    """Every model's prices, newest first, for the gateway's in-process catalog."""
    schedule: dict[str, list[tuple[datetime, PriceNanos]]] = defaultdict(list)
    for price in ModelPrice.objects.order_by("model", "-effective_from"):
        schedule[price.model].append(
            (
                price.effective_from,
                PriceNanos.from_decimals(
                    input_per_mtok=price.input_per_mtok,
                    cached_input_per_mtok=price.cached_input_per_mtok,
                    output_per_mtok=price.output_per_mtok,
                    cache_write_per_mtok=price.cache_write_per_mtok,
                    cache_write_1h_per_mtok=price.cache_write_1h_per_mtok,
                ),
            )
        )
    return dict(schedule)


def price_in_force(schedule: list[tuple[datetime, PriceNanos]], at: datetime) -> PriceNanos | None:
    for effective_from, price in schedule:
        if effective_from <= at:
            return price
    return None


@dataclass(frozen=True)
class PriceView:
    """An upstream model's price in force at a moment, and the next one scheduled after it."""

    model: str
    in_force: ModelPrice | None
    next: ModelPrice | None


def prices_for_models(models: Iterable[str], *, at: datetime) -> dict[str, PriceView]:
    """The price in force at `at` and the next scheduled one of each model named, in one query."""
    names = sorted(set(models))
    found: dict[str, PriceView] = {name: PriceView(name, None, None) for name in names}
    # The prices of a model are few (one per price change): newest first, the first at or before
    # `at` is in force and the one read just before it is the next.
    for price in ModelPrice.objects.filter(model__in=names).order_by("model", "-effective_from"):
        view = found[price.model]
        if view.in_force is not None:
            continue
        if price.effective_from <= at:
            found[price.model] = PriceView(price.model, price, view.next)
        else:
            found[price.model] = PriceView(price.model, None, price)
    return found


def price_models_page(*, after: str = "", search: str = "", limit: int = 50) -> tuple[list[str], bool]:
    """Upstream model ids with a price, by name, from after `after` (keyset): (page, is there more)."""
    query = ModelPrice.objects.order_by("model").values_list("model", flat=True).distinct()
    if after:
        query = query.filter(model__gt=after)
    if search:
        query = query.filter(model__icontains=search)
    names = list(query[: limit + 1])
    return names[:limit], len(names) > limit


def price_history(model: str) -> QuerySet[ModelPrice]:
    history: QuerySet[ModelPrice] = ModelPrice.objects.filter(model=model).order_by("-effective_from")
    return history


def usage_for_tenant(*, tenant_id: int) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(tenant_id=tenant_id)


# --- budgets: spend so far, forecast, the overview's budget line, alerts -----------------------------
#
# Spend so far is read from the tenant-hour and cell rollups (a few hundred rows for a month, not
# millions of raw rows): they hold every usage row written, to the nano-dollar. A period starts at
# local midnight, a whole UTC hour in every zone with whole-hour offsets (see billing/overview.py for
# the others).


def _rollup_spend(budget: Budget, *, subject: str, start: datetime, end: datetime) -> Decimal:
    hours: QuerySet[Any]
    if budget.scope == Budget.Scope.TENANT:
        hours = UsageHourlyTenant.objects.filter(tenant_id=budget.tenant_id)
    elif budget.scope == Budget.Scope.KEY:
        hours = UsageHourlyKey.objects.filter(tenant_id=budget.tenant_id, api_key_id=budget.api_key_id or 0)
    else:
        hours = (
            UsageHourly.objects.filter(tenant_id=budget.tenant_id)
            .exclude(end_user="")
            .filter(end_user=subject)
        )
    total = hours.filter(hour__gte=start, hour__lt=end).aggregate(total=Sum("cost"))["total"]
    return Decimal(0) if total is None else Decimal(total)


def _projection(*, spent: Decimal, span: Window, now: datetime) -> Decimal | None:
    """Spend at the period's end at the rate so far (None before 10 % of the period has passed,
    as the forecast alert waits too: an hour into a month, one call extrapolates to nonsense)."""
    start, end = span.start.astimezone(UTC), span.end.astimezone(UTC)
    elapsed, length = (now - start).total_seconds(), (end - start).total_seconds()
    if elapsed * 100 < length * FORECAST_MIN_ELAPSED_PERCENT or elapsed <= 0:
        return None
    micros_elapsed = (now - start) // timedelta(microseconds=1)
    micros_length = (end - start) // timedelta(microseconds=1)
    return (spent * micros_length / micros_elapsed).quantize(NANO)


NANO = Decimal("0.000000001")


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    label: str
    period_start: datetime  # local
    period_end: datetime  # local, exclusive
    spent: Decimal  # the subject's spend this period (each end user: the biggest spender's)
    subject: str  # each end user: who spent most ("" otherwise)
    subjects: int  # each end user: how many spent anything
    projected: Decimal | None

    @property
    def percent(self) -> int:
        return int(self.spent * 100 / self.budget.amount) if self.budget.amount > 0 else 0

    @property
    def bar(self) -> int:
        """The percent spent, in tens (0..100), for a progress bar's CSS class."""
        return min(100, max(0, self.percent // 10 * 10))

    @property
    def projected_percent(self) -> int | None:
        if self.projected is None or self.budget.amount <= 0:
            return None
        return int(self.projected * 100 / self.budget.amount)


def budget_label(budget: Budget) -> str:
    if budget.scope == Budget.Scope.KEY:
        key = budget.api_key
        return f"key {key.name} (th-{key.prefix}…)" if key is not None else "key"
    if budget.scope == Budget.Scope.END_USER:
        return f"end user {budget.end_user}" if budget.end_user else "each end user"
    return "whole tenant"


def budgets_for_tenant(*, tenant: Tenant, now: datetime | None = None) -> list[BudgetStatus]:
    """Every budget of the tenant with its spend this period and where that rate leads."""
    now = now or timezone.now()
    statuses = []
    for budget in (
        Budget.objects.filter(tenant=tenant).select_related("api_key").order_by("scope", "period", "id")
    ):
        span = window(budget.period, tenant.timezone, now)
        subject, subjects = "", 0
        if budget.scope == Budget.Scope.END_USER and not budget.end_user:
            ranked = list(
                UsageHourly.objects.filter(tenant_id=tenant.pk, hour__gte=span.start, hour__lt=span.end)
                .exclude(end_user="")
                .values("end_user")
                .annotate(usd=Sum("cost"))
                .order_by("-usd", "end_user")
            )
            subjects = len(ranked)
            spent = Decimal(ranked[0]["usd"]) if ranked else Decimal(0)
            subject = ranked[0]["end_user"] if ranked else ""
        else:
            spent = _rollup_spend(budget, subject=budget.end_user, start=span.start, end=span.end)
        statuses.append(
            BudgetStatus(
                budget=budget,
                label=budget_label(budget),
                period_start=span.start,
                period_end=span.end,
                spent=spent,
                subject=subject,
                subjects=subjects,
                projected=_projection(spent=spent, span=span, now=now),
            )
        )
    return statuses


def budget_for_tenant(*, tenant: Tenant, budget_id: int) -> Budget | None:
    """The tenant's budget of that id (None for another tenant's: a 404, never a 403)."""
    found: Budget | None = (
        Budget.objects.filter(tenant=tenant, pk=budget_id).select_related("api_key").first()
    )
    return found


_PREFERRED_PERIODS = {"hour": ("day", "week", "month"), "7d": ("week", "month", "day")}


@dataclass(frozen=True)
class BudgetTrack:
    """The overview's budget chart: a whole-tenant budget over its own period (its days, or its
    hours for a daily budget), the spend so far at the end of each bucket, and the projection at
    the rate so far from now to the period's end."""

    status: BudgetStatus
    span: Range  # the budget's period
    cumulative: list[Decimal | None]  # per bucket: spent by its end (by now for the current one)
    projection: list[Decimal | None]  # per bucket from the current one: spent by its end at this rate


def budget_track(*, tenant: Tenant, span: Range, now: datetime | None = None) -> BudgetTrack | None:
    """The whole-tenant budget that suits the range shown (a day's for hours, a week's for 7 days,
    else a month's) and its period's track; None without one."""
    now = now or timezone.now()
    budgets = {b.period: b for b in Budget.objects.filter(tenant=tenant, scope=Budget.Scope.TENANT)}
    order = _PREFERRED_PERIODS.get("hour" if span.hourly else span.preset, ("month", "week", "day"))
    budget = next((budgets[period] for period in order if period in budgets), None)
    if budget is None:
        return None
    period = window(budget.period, tenant.timezone, now)
    axis = overview_range(
        tenant=tenant,
        preset="custom",
        first_day=period.start.date(),
        last_day=(period.end - timedelta(days=1)).date(),
    )
    traffic = traffic_series(tenant=tenant, span=axis)
    spent = sum((bucket.cost for bucket in traffic), start=Decimal(0))
    projected = _projection(spent=spent, span=period, now=now)
    status = BudgetStatus(budget, budget_label(budget), period.start, period.end, spent, "", 0, projected)
    start_utc = period.start.astimezone(UTC)
    rate = None if projected is None else spent / ((now - start_utc) // timedelta(microseconds=1))
    cumulative: list[Decimal | None] = []
    projection: list[Decimal | None] = []
    running = Decimal(0)
    for key, bucket in zip(axis.keys, traffic, strict=True):
        bucket_start, bucket_end = axis.bucket_start(key), axis.bucket_end(key)
        running += bucket.cost
        cumulative.append(None if bucket_start > now else running)
        if rate is None or bucket_end <= now:
            projection.append(None)
        elif bucket_start <= now:
            projection.append(spent)  # the current bucket: where the projection starts
        else:
            micros = (bucket_end - now) // timedelta(microseconds=1)
            projection.append((spent + rate * micros).quantize(NANO))
    return BudgetTrack(status=status, span=axis, cumulative=cumulative, projection=projection)


@dataclass(frozen=True)
class AlertEntry:
    """One alert of the history: what crossed, when, to whom, and whether it arrived."""

    alert: BudgetAlert
    budget_label: str
    sent_at: datetime  # local
    recipients: list[str]
    delivered: list[str]
    failed: list[str]
    email_error: str
    webhook: str  # "" (none), "delivered", "failed", "retrying"
    webhook_error: str

    @property
    def email(self) -> str:
        """ "" (nobody to email), "delivered", "failed", "partly delivered" or "pending"."""
        if not self.recipients:
            return ""
        if set(self.recipients) <= set(self.delivered):
            return "delivered"
        if self.failed:
            return "partly delivered" if self.delivered else "failed"
        return "pending"


def _alert_entries(alerts: QuerySet[BudgetAlert], zone: ZoneInfo) -> list[AlertEntry]:
    entries = []
    for alert in alerts.select_related("budget__api_key").prefetch_related("webhook_attempts"):
        attempts = sorted(alert.webhook_attempts.all(), key=lambda attempt: attempt.attempt)
        last = attempts[-1] if attempts else None
        if last is None:
            webhook = "pending" if alert.budget.webhook_url else ""
        elif last.delivered:
            webhook = "delivered"
        else:
            webhook = "failed" if last.final else "retrying"
        entries.append(
            AlertEntry(
                alert=alert,
                budget_label=budget_label(alert.budget) + (f" ({alert.subject})" if alert.subject else ""),
                sent_at=alert.created_at.astimezone(zone),
                recipients=list(alert.email_recipients or []),
                delivered=list(alert.email_delivered or []),
                failed=list(alert.email_failed or []),
                email_error=alert.email_error,
                webhook=webhook,
                webhook_error="" if last is None or last.delivered else last.error,
            )
        )
    return entries


def alert_history(*, tenant: Tenant, limit: int = 100) -> list[AlertEntry]:
    """The tenant's alerts, newest first."""
    alerts = BudgetAlert.objects.filter(budget__tenant=tenant).order_by("-created_at", "-id")[:limit]
    return _alert_entries(alerts, ZoneInfo(tenant.timezone))


def alert_markers(*, tenant: Tenant, span: Range, limit: int = 200) -> list[AlertEntry]:
    """The alerts sent within the range, oldest first (the spend chart's markers)."""
    alerts = BudgetAlert.objects.filter(
        budget__tenant=tenant, created_at__gte=span.start, created_at__lt=span.end
    ).order_by("created_at", "id")[:limit]
    return _alert_entries(alerts, span.zone)


# --- the usage explorer: filtered rows, keyset pages, one call, CSV ----------------------------------

STATUS_CLASSES: dict[str, Q] = {
    "success": Q(status__lt=400),
    "4xx": Q(status__gte=400, status__lt=500),
    "5xx": Q(status__gte=500),
    "error": Q(status__gte=400),
}
PAGE_SIZE = 50


@dataclass(frozen=True)
class UsageFilter:
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive
    api_key_id: int | None = None
    model: str = ""  # requested model, exactly
    end_user: str = ""
    status_class: str = ""  # "" or a key of STATUS_CLASSES


def tenant_has_calls(*, tenant: Tenant) -> bool:
    """Has the tenant ever made a call (kept in the rollups after the raw rows are purged)?"""
    return UsageHourlyTenant.objects.filter(tenant_id=tenant.pk).exists()


def usage_rows(*, tenant: Tenant, query: UsageFilter) -> QuerySet[UsageRecord]:
    """The tenant's usage rows that pass the filter (unordered)."""
    rows = UsageRecord.objects.filter(
        tenant_id=tenant.pk, created_at__gte=query.start, created_at__lt=query.end
    )
    if query.api_key_id is not None:
        rows = rows.filter(api_key_id=query.api_key_id)
    if query.model:
        rows = rows.filter(requested_model=query.model)
    if query.end_user:
        rows = rows.filter(end_user=query.end_user)
    if query.status_class:
        rows = rows.filter(STATUS_CLASSES[query.status_class])
    return rows.order_by()


class BadCursor(ValueError):
    pass


def cursor_text(record: UsageRecord) -> str:
    """A page's position: the last row's created_at (µs since the epoch) and id."""
    micros = (record.created_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{record.pk}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _cursor(text: str) -> tuple[datetime, int]:
    micros, dot, row_id = text.partition(".")
    if not dot or not micros.isascii() or not row_id.isascii() or len(text) > 40:
        raise BadCursor("That page position is not one this page made.")
    try:
        return EPOCH + timedelta(microseconds=int(micros)), int(row_id)
    except (ValueError, OverflowError):
        raise BadCursor("That page position is not one this page made.") from None


@dataclass(frozen=True)
class UsagePage:
    rows: list[UsageRecord]
    next_cursor: str  # "" on the last page


def usage_page(*, tenant: Tenant, query: UsageFilter, after: str = "", size: int = PAGE_SIZE) -> UsagePage:
    """One page of the explorer, newest first, after the position `after` (keyset on created_at,
    id: the cost of a page does not grow with how far down it is)."""
    rows = usage_rows(tenant=tenant, query=query)
    if after:
        created_at, row_id = _cursor(after)
        # The plain bound lets the (tenant, created_at) index start where the page does.
        rows = rows.filter(created_at__lte=created_at).filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=row_id)
        )
    found = list(rows.order_by("-created_at", "-id")[: size + 1])
    more = len(found) > size
    found = found[:size]
    return UsagePage(rows=found, next_cursor=cursor_text(found[-1]) if more else "")


def usage_record_for(*, tenant: Tenant, record_id: int) -> UsageRecord | None:
    """One call of the tenant (None for another tenant's: a 404, never a 403)."""
    found: UsageRecord | None = UsageRecord.objects.filter(tenant_id=tenant.pk, pk=record_id).first()
    return found


def body_log_for(*, tenant: Tenant, request_id: str) -> Any:
    """The call's body log, when the tenant logs bodies (None otherwise). The log is the gateway's
    (gateway.models.BodyLog): looked up by name, as billing never imports gateway."""
    if not tenant.body_logging:
        return None
    body_log = apps.get_model("gateway", "BodyLog")
    return body_log.objects.filter(tenant_id=tenant.pk, request_id=request_id).first()


def tenant_keys(*, tenant: Tenant) -> list[ApiKey]:
    """The tenant's keys, for the explorer's filter and its labels."""
    return list(ApiKey.objects.filter(tenant=tenant).order_by("name", "pk").only("name", "prefix", "status"))


CSV_COLUMNS = (
    "request_id",
    "created_at",
    "api_key_id",
    "api_key_name",
    "end_user",
    "endpoint",
    "requested_model",
    "served_model",
    "provider",
    "status",
    "error_type",
    "streamed",
    "cache_hit",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "client_request_id",
)
_CSV_FIELDS = (
    "id",
    "request_id",
    "created_at",
    "api_key_id",
    "end_user",
    "endpoint",
    "requested_model",
    "served_model",
    "provider",
    "status",
    "error_type",
    "streamed",
    "cache_hit",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "client_request_id",
)
CSV_CHUNK = 2000


def _cell(text: str) -> str:
    """A text a client chose (end user, model, request id), made inert for spreadsheets: one that
    starts like a formula gets a leading apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _decimal(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def usage_csv_chunks(*, tenant: Tenant, query: UsageFilter, chunk: int = CSV_CHUNK) -> Iterator[str]:
    """The filtered rows as CSV, oldest first, a chunk of rows per string: the header, then one
    keyset query per chunk (created_at, id), so memory stays flat whatever the range and each query
    is short. Times are ISO 8601 in the tenant's zone, costs exact decimals of USD."""
    zone = ZoneInfo(tenant.timezone)
    names = {key.pk: key.name for key in tenant_keys(tenant=tenant)}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    rows = usage_rows(tenant=tenant, query=query)
    position: tuple[datetime, int] | None = None
    while True:
        page = rows
        if position is not None:
            # The plain bound lets the (tenant, created_at) index start at the chunk, not at the
            # range's beginning (the OR alone would make each chunk scan everything before it).
            page = rows.filter(created_at__gte=position[0]).filter(
                Q(created_at__gt=position[0]) | Q(created_at=position[0], id__gt=position[1])
            )
        found = list(page.order_by("created_at", "id").values_list(*_CSV_FIELDS)[:chunk])
        if not found:
            return
        buffer.seek(0)
        buffer.truncate()
        for (_row_id, request_id, created_at, key_id, end_user, endpoint, requested, served, provider, status,
             error_type, streamed, cache_hit, prompt, cached, completion, cost, latency, ttft, attempts,
             client_request_id) in found:  # fmt: skip
            writer.writerow(
                (
                    _cell(request_id),
                    created_at.astimezone(zone).isoformat(timespec="milliseconds"),
                    key_id or "",
                    _cell(names.get(key_id, "")) if key_id else "",
                    _cell(end_user),
                    endpoint,
                    _cell(requested),
                    _cell(served),
                    provider,
                    status,
                    error_type,
                    int(streamed),
                    int(cache_hit),
                    prompt,
                    cached,
                    completion,
                    _decimal(cost),
                    _decimal(latency),
                    _decimal(ttft),
                    attempts,
                    _cell(client_request_id),
                )
            )
        yield buffer.getvalue()
        last = found[-1]
        position = (last[2], last[0])
        if len(found) < chunk:
            return


# --- credits -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerPage:
    entries: list[CreditEntry]
    next_cursor: str


def credit_ledger_page(*, tenant: Tenant, after: str = "", size: int = PAGE_SIZE) -> LedgerPage:
    """A page of the tenant's credit ledger, newest first (keyset on created_at, id)."""
    entries = CreditEntry.objects.filter(tenant=tenant)
    if after:
        created_at, entry_id = _cursor(after)
        entries = entries.filter(created_at__lte=created_at).filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=entry_id)
        )
    found = list(entries.order_by("-created_at", "-id")[: size + 1])
    more = len(found) > size
    found = found[:size]
    next_cursor = ""
    if more:
        micros = (found[-1].created_at - EPOCH) // timedelta(microseconds=1)
        next_cursor = f"{micros}.{found[-1].pk}"
    return LedgerPage(entries=found, next_cursor=next_cursor)


@dataclass(frozen=True)
class SessionUsage:
    """An agent session's usage over a time range (hours from its first to its last call)."""

    session: str
    requests: int
    errors: int
    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    completion_tokens: int
    cost: Decimal
    first_hour: datetime
    last_hour: datetime


def usage_by_session(*, tenant_id: int, since: datetime, until: datetime) -> list[SessionUsage]:
    """A tenant's spend per agent session, costliest first, from the session rollups: the hours
    starting from the one holding `since` and before `until`. Calls that named no session are
    not in it (their usage is in the tenant's rollups)."""
    rows = (
        UsageHourlySession.objects.filter(tenant_id=tenant_id, hour__gte=hour_of(since), hour__lt=until)
        .values("session")
        .annotate(
            total_requests=Sum("requests"),
            total_errors=Sum("errors"),
            total_prompt=Sum("prompt_tokens"),
            total_cached=Sum("cached_tokens"),
            total_cache_write=Sum("cache_write_tokens"),
            total_completion=Sum("completion_tokens"),
            total_cost=Sum("cost"),
            first=Min("hour"),
            last=Max("hour"),
        )
        .order_by("-total_cost", "session")
    )
    return [
        SessionUsage(
            session=row["session"],
            requests=row["total_requests"],
            errors=row["total_errors"],
            prompt_tokens=row["total_prompt"],
            cached_tokens=row["total_cached"],
            cache_write_tokens=row["total_cache_write"],
            completion_tokens=row["total_completion"],
            cost=row["total_cost"],
            first_hour=row["first"],
            last_hour=row["last"],
        )
        for row in rows
    ]


# --- the operator's tenants page ------------------------------------------------------------------


@dataclass(frozen=True)
class TenantMonth:
    spend: Decimal
    requests: int


def tenants_this_month(tenants: list[Tenant], *, now: datetime | None = None) -> dict[int, TenantMonth]:
    """Spend and requests of each tenant in its current calendar month (in its time zone, as a
    monthly budget counts), from the tenant-hour rollup: one query for the lot, reading about 720
    rows per tenant off its (tenant_id, hour) index however many calls there were."""
    now = now or timezone.now()
    by_start: dict[datetime, list[int]] = {}
    for tenant in tenants:
        by_start.setdefault(window("month", tenant.timezone, now).start, []).append(tenant.pk)
    if not by_start:
        return {}
    where = Q()
    for start, ids in by_start.items():
        where |= Q(tenant_id__in=ids, hour__gte=start)
    rows = (
        UsageHourlyTenant.objects.filter(where)
        .values("tenant_id")
        .annotate(spend=Sum("cost"), calls=Sum("requests"))
        .order_by()
    )
    return {
        row["tenant_id"]: TenantMonth(spend=Decimal(row["spend"] or 0), requests=int(row["calls"] or 0))
        for row in rows
    }


# --- the operator's redemption code batches (/ops/codes/) -------------------------------------------

CODE_BATCH_PAGE_SIZE = 50
_BATCH_NAME = re.compile(r"[0-9A-Za-z-]{1,32}")


@dataclass(frozen=True)
class CodeBatchPage:
    batches: list[
        dict[str, Any]
    ]  # batch, count, redeemed, voided, amount, expires_at, created_at, created_by
    next_cursor: str  # "" on the last page


def code_batches_page(*, cursor: str = "", size: int = CODE_BATCH_PAGE_SIZE) -> CodeBatchPage:
    """Redemption code batches, newest first (a batch's name starts with its creation time), each
    with how many codes it has, were redeemed and were voided; keyset-paginated on the name
    (`cursor`: the last name shown; BadCursor for one this page did not make)."""
    codes = RedemptionCode.objects.all()
    if cursor:
        if not _BATCH_NAME.fullmatch(cursor):
            raise BadCursor("Bad page cursor.")
        codes = codes.filter(batch__lt=cursor)
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in codes.values("batch")
        .annotate(
            count=Count("pk"),
            redeemed=Count("pk", filter=Q(redeemed_at__isnull=False)),
            voided=Count("pk", filter=Q(voided_at__isnull=False)),
            amount=Max("amount"),
            expires_at=Max("expires_at"),
            created_at=Min("created_at"),
            created_by=Max("created_by__email"),
        )
        .order_by("-batch")[: size + 1]
    ]
    more = len(rows) > size
    rows = rows[:size]
    for row in rows:
        row["open"] = row["count"] - row["redeemed"] - row["voided"]
    return CodeBatchPage(batches=rows, next_cursor=rows[-1]["batch"] if more else "")
