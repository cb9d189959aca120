"""The queries behind a tenant's usage overview (by default the last 30 days): spend per day,
tokens per model, latency percentiles per day, top keys.

They read only the hourly rollups, never the raw usage rows: the tenant-wide figures (spend and
latency per day) come from `UsageHourlyTenant` (one row per tenant-hour), the splits by model and
key from `UsageHourly` (one row per hour × key × end user × model). Rollups are kept after the raw
rows are purged, and
their latency histograms add up (billing/histograms.py), so percentiles over a day come from the
sum of its hours' bucket counts, summed in SQL.

Days are the tenant's calendar days. The rollups are hourly in UTC: an hour counts in the local
day its start falls in (`TruncDate(hour, tzinfo=zone)`), which follows DST exactly (a local day
has 23 or 25 hours then). In a zone whose offset is not a whole number of hours (Asia/Kolkata
+05:30, Australia/Adelaide +09:30/+10:30, Asia/Kathmandu +05:45) the hour that straddles local
midnight counts wholly in the day it starts in: a day there is off by up to that hour's share
(30 or 45 minutes of traffic moved to the previous day). Money stays Decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce
from operator import add
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import ApiKey, Tenant
from billing import histograms
from billing.models import ERROR_CLASSES, UsageHourly, UsageHourlyTenant

DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Window:
    """The tenant's last `len(days)` calendar days (today included), and the UTC hours they span."""

    zone: ZoneInfo
    days: list[date]
    start: datetime  # UTC: local midnight starting the first day
    end: datetime  # UTC: local midnight after the last day


def overview_window(*, tenant: Tenant, days: int = DEFAULT_DAYS, now: datetime | None = None) -> Window:
    if days < 1:
        raise ValueError("an overview covers at least one day")
    zone = ZoneInfo(tenant.timezone)
    today = (now or timezone.now()).astimezone(zone).date()
    first = today - timedelta(days=days - 1)

    def midnight(day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)

    return Window(
        zone=zone,
        days=[first + timedelta(days=offset) for offset in range(days)],
        start=midnight(first),
        end=midnight(today + timedelta(days=1)),
    )


def _hours(tenant: Tenant, window: Window) -> QuerySet[UsageHourly]:
    # The rollups' unique cell (tenant_id, hour, ...) is the index this range reads.
    return UsageHourly.objects.filter(tenant_id=tenant.pk, hour__gte=window.start, hour__lt=window.end)


def _by_day(tenant: Tenant, window: Window) -> Any:  # a values() queryset of {"day": date}
    # Tenant-wide: the tenant × hour rollup (24 rows a day), not every key × model cell.
    return (
        UsageHourlyTenant.objects.filter(tenant_id=tenant.pk, hour__gte=window.start, hour__lt=window.end)
        .annotate(day=TruncDate("hour", tzinfo=window.zone))
        .values("day")
        .order_by("day")
    )


_ERRORS = reduce(add, (F(name) for name in ERROR_CLASSES))


@dataclass(frozen=True)
class DaySpend:
    day: date
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


def spend_per_day(*, tenant: Tenant, days: int = DEFAULT_DAYS, now: datetime | None = None) -> list[DaySpend]:
    """Every day of the window, oldest first (a day without calls reads zero)."""
    window = overview_window(tenant=tenant, days=days, now=now)
    rows = {
        row["day"]: row
        for row in _by_day(tenant, window).annotate(
            n=Sum("requests"),
            e=Sum(_ERRORS),
            p=Sum("prompt_tokens"),
            c=Sum("completion_tokens"),
            usd=Sum("cost"),
        )
    }
    result = []
    for day in window.days:
        row = rows.get(day)
        result.append(
            DaySpend(
                day=day,
                requests=int(row["n"]) if row else 0,
                errors=int(row["e"]) if row else 0,
                prompt_tokens=int(row["p"]) if row else 0,
                completion_tokens=int(row["c"]) if row else 0,
                cost=Decimal(row["usd"]) if row else Decimal(0),
            )
        )
    return result


@dataclass(frozen=True)
class ModelTokens:
    model: str  # the model the callers asked for
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost: Decimal

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def tokens_per_model(
    *, tenant: Tenant, days: int = DEFAULT_DAYS, now: datetime | None = None
) -> list[ModelTokens]:
    """Tokens and cost per requested model over the window, most tokens first."""
    window = overview_window(tenant=tenant, days=days, now=now)
    rows = (
        _hours(tenant, window)
        .values("requested_model")
        .annotate(
            n=Sum("requests"),
            p=Sum("prompt_tokens"),
            k=Sum("cached_tokens"),
            c=Sum("completion_tokens"),
            usd=Sum("cost"),
        )
        .order_by()
    )
    models = [
        ModelTokens(
            model=row["requested_model"],
            requests=int(row["n"]),
            prompt_tokens=int(row["p"]),
            cached_tokens=int(row["k"]),
            completion_tokens=int(row["c"]),
            cost=Decimal(row["usd"]),
        )
        for row in rows
    ]
    return sorted(models, key=lambda model: (-model.tokens, model.model))


@dataclass(frozen=True)
class DayLatency:
    """Percentiles in milliseconds (None: no call that day, or no streamed call for ttft), read
    off the day's summed histogram: within a factor of √2 of the exact value, usually far closer."""

    day: date
    requests: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    ttft_p99: float | None


def _millis(micros: float | None) -> float | None:
    return None if micros is None else round(micros / 1000, 3)


def _percentiles(counts: Sequence[int]) -> tuple[float | None, float | None, float | None]:
    return (
        _millis(histograms.percentile(counts, 0.50)),
        _millis(histograms.percentile(counts, 0.95)),
        _millis(histograms.percentile(counts, 0.99)),
    )


def latency_percentiles_per_day(
    *, tenant: Tenant, days: int = DEFAULT_DAYS, now: datetime | None = None
) -> list[DayLatency]:
    """p50 / p95 / p99 of the total latency and of the time to first token, per day, oldest first."""
    window = overview_window(tenant=tenant, days=days, now=now)
    latency, ttft = histograms.COLUMNS["latency"], histograms.COLUMNS["ttft"]
    sums = {name: Sum(name) for name in (*latency, *ttft)}
    rows = {row["day"]: row for row in _by_day(tenant, window).annotate(n=Sum("requests"), **sums)}
    result = []
    for day in window.days:
        row = rows.get(day)
        if row is None:
            result.append(DayLatency(day, 0, None, None, None, None, None, None))
            continue
        result.append(
            DayLatency(
                day,
                int(row["n"]),
                *_percentiles([int(row[name]) for name in latency]),
                *_percentiles([int(row[name]) for name in ttft]),
            )
        )
    return result


@dataclass(frozen=True)
class KeySpend:
    api_key_id: int  # 0: calls without a key row (end-user tokens)
    name: str  # "" for a key that no longer exists, or for 0
    prefix: str
    requests: int
    cost: Decimal


def top_keys(
    *, tenant: Tenant, days: int = DEFAULT_DAYS, limit: int = 10, now: datetime | None = None
) -> list[KeySpend]:
    """The keys that spent most over the window (ties: most requests), with their names."""
    window = overview_window(tenant=tenant, days=days, now=now)
    rows = list(
        _hours(tenant, window)
        .values("api_key_id")
        .annotate(n=Sum("requests"), usd=Sum("cost"))
        .order_by("-usd", "-n", "api_key_id")[:limit]
    )
    names = {
        key.pk: key
        for key in ApiKey.objects.filter(tenant=tenant, pk__in=[row["api_key_id"] for row in rows]).only(
            "name", "prefix"
        )
    }
    result = []
    for row in rows:
        key = names.get(row["api_key_id"])
        result.append(
            KeySpend(
                api_key_id=row["api_key_id"],
                name=key.name if key else "",
                prefix=key.prefix if key else "",
                requests=int(row["n"]),
                cost=Decimal(row["usd"]),
            )
        )
    return result
