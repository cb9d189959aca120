"""Reads of billing data."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from accounts.models import ApiKey, Tenant
from billing import periods
from billing.models import Budget, ModelPrice, UsageHourly, UsageRecord
from billing.pricing import PriceNanos

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
                ),
            )
        )
    return dict(schedule)


def price_in_force(schedule: list[tuple[datetime, PriceNanos]], at: datetime) -> PriceNanos | None:
    for effective_from, price in schedule:
        if effective_from <= at:
            return price
    return None


def usage_for_tenant(*, tenant_id: int) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(tenant_id=tenant_id)
