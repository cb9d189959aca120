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
from billing.models import ERROR_CLASSES, UsageHourly, UsageHourlyKey, UsageHourlyModel, UsageHourlyTenant

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


# --- the console's overview: a range of hours or days, and its charts ------------------------------
#
# A range is the last 24 hours (hourly), the tenant's last 7 or 30 calendar days (daily), or custom
# local dates (hourly up to HOURLY_MAX, daily beyond). Its buckets are the tenant's local hours or
# days: an hourly bucket is one UTC rollup hour, labelled with its local time (a DST change gives a
# 23- or 25-hour day of distinct buckets), a daily bucket the local day its hours start in.

HOURLY_MAX = timedelta(hours=48)
MAX_CUSTOM_DAYS = 400
PRESETS = ("24h", "7d", "30d")


class RangeError(ValueError):
    """A custom range that cannot be shown; the message says why, in a sentence."""


@dataclass(frozen=True)
class Range:
    preset: str  # "24h", "7d", "30d" or "custom"
    zone: ZoneInfo
    start: datetime  # UTC: the first rollup hour that counts is the first at or after it
    end: datetime  # UTC, exclusive
    hourly: bool
    keys: tuple[Any, ...]  # per bucket: its UTC hour (hourly) or its local date (daily)

    @property
    def resolution(self) -> str:
        return "hour" if self.hourly else "day"

    def bucket_start(self, key: Any) -> datetime:
        """A bucket's start as an aware local time."""
        if self.hourly:
            moment: datetime = key
            return moment.astimezone(self.zone)
        return _local_midnight(key, self.zone)

    def bucket_end(self, key: Any) -> datetime:
        if self.hourly:
            moment: datetime = key
            return (moment + timedelta(hours=1)).astimezone(self.zone)
        day: date = key
        return _local_midnight(day + timedelta(days=1), self.zone)

    def key_of(self, moment: datetime) -> Any:
        """The bucket key an instant falls in (it may be outside the range)."""
        if self.hourly:
            return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return _hour_start(moment).astimezone(self.zone).date()


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hours_between(start: datetime, end: datetime) -> tuple[datetime, ...]:
    first = _hour_start(start)
    if first < start:
        first += timedelta(hours=1)
    hours = []
    while first < end:
        hours.append(first)
        first += timedelta(hours=1)
    return tuple(hours)


def overview_range(
    *,
    tenant: Tenant | None,
    preset: str = "7d",
    first_day: date | None = None,
    last_day: date | None = None,
    now: datetime | None = None,
) -> Range:
    """The range a console overview shows, in the tenant's time zone (no tenant: the operator's
    overview, in UTC). `preset` "custom" takes `first_day` to `last_day` (local dates, both
    included); RangeError says what is wrong with them."""
    zone = ZoneInfo(tenant.timezone) if tenant is not None else ZoneInfo("UTC")
    now = now or timezone.now()
    if preset == "24h":
        end = _hour_start(now) + timedelta(hours=1)
        start = end - timedelta(hours=24)
        return Range(preset, zone, start, end, True, _hours_between(start, end))
    if preset in ("7d", "30d"):
        today = now.astimezone(zone).date()
        first_day, last_day = today - timedelta(days=int(preset[:-1]) - 1), today
    elif preset == "custom":
        if first_day is None or last_day is None:
            raise RangeError("Choose the first and the last day of the range.")
        if last_day < first_day:
            raise RangeError("The last day of the range comes before its first day.")
        if (last_day - first_day).days >= MAX_CUSTOM_DAYS:
            raise RangeError(f"A range spans at most {MAX_CUSTOM_DAYS} days.")
    else:
        raise RangeError(f"Unknown range {preset[:20]!r}: choose 24h, 7d, 30d or custom days.")
    start = _local_midnight(first_day, zone).astimezone(UTC)
    end = _local_midnight(last_day + timedelta(days=1), zone).astimezone(UTC)
    if end - start <= HOURLY_MAX:
        return Range(preset, zone, start, end, True, _hours_between(start, end))
    days = tuple(first_day + timedelta(days=offset) for offset in range((last_day - first_day).days + 1))
    return Range(preset, zone, start, end, False, days)


def _bucketed(queryset: QuerySet[Any], span: Range, *group: str, **sums: Any) -> dict[tuple[Any, ...], Any]:
    """Rows of a rollup queryset summed per bucket (and per `group` columns): {(key, *group): row}."""
    rows = queryset.filter(hour__gte=span.start, hour__lt=span.end)
    if span.hourly:
        rows = rows.annotate(bucket=F("hour"))
    else:
        rows = rows.annotate(bucket=TruncDate("hour", tzinfo=span.zone))
    result = {}
    for row in rows.values("bucket", *group).annotate(**sums).order_by():
        key = row["bucket"].astimezone(UTC) if span.hourly else row["bucket"]
        result[(key, *(row[name] for name in group))] = row
    return result


def _tenant_hours(tenant: Tenant) -> QuerySet[UsageHourlyTenant]:
    return UsageHourlyTenant.objects.filter(tenant_id=tenant.pk)


@dataclass(frozen=True)
class Traffic:
    """One bucket's calls: requests, errors by class (billing.models.ERROR_CLASSES), tokens, cost."""

    start: datetime  # local
    requests: int
    errors: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    cache_hits: int = 0  # calls answered from the response cache (they cost nothing) ...
    saved_cost: Decimal = Decimal(0)  # ... and what they would have cost

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def traffic_series(*, tenant: Tenant, span: Range) -> list[Traffic]:
    """Every bucket of the range, oldest first (a bucket without calls reads zero)."""
    sums = {
        name: Sum(name)
        for name in ("requests", *ERROR_CLASSES, "prompt_tokens", "completion_tokens", "cache_hits")
    }
    rows = _bucketed(_tenant_hours(tenant), span, **sums, usd=Sum("cost"), saved=Sum("saved_cost"))
    series = []
    for key in span.keys:
        row = rows.get((key,))
        series.append(
            Traffic(
                start=span.bucket_start(key),
                requests=int(row["requests"]) if row else 0,
                errors={name: int(row[name]) if row else 0 for name in ERROR_CLASSES},
                prompt_tokens=int(row["prompt_tokens"]) if row else 0,
                completion_tokens=int(row["completion_tokens"]) if row else 0,
                cost=Decimal(row["usd"]) if row else Decimal(0),
                cache_hits=int(row["cache_hits"]) if row else 0,
                saved_cost=Decimal(row["saved"]) if row else Decimal(0),
            )
        )
    return series


@dataclass(frozen=True)
class Speed:
    """One bucket's latencies in milliseconds (p50, p95, p99 of the total and of the time to first
    token; None without calls) and output speed in tokens per second (None: no completed stream)."""

    start: datetime  # local
    requests: int
    latency: tuple[float | None, float | None, float | None]
    ttft: tuple[float | None, float | None, float | None]
    tokens_per_second: float | None


def _tokens_per_second(tokens: int, micros: int) -> float | None:
    return None if micros <= 0 else round(tokens * 1_000_000 / micros, 1)


def latency_series(
    *, tenant: Tenant, span: Range, model: str | None = None, api_key_id: int | None = None
) -> list[Speed]:
    """Latency percentiles, TTFT and output speed per bucket: the tenant's (from its tenant-hour
    rollup), or one requested model's and/or one key's (from the cells)."""
    latency, ttft = histograms.COLUMNS["latency"], histograms.COLUMNS["ttft"]
    sums = {name: Sum(name) for name in (*latency, *ttft, "requests", "generation_tokens", "generation_us")}
    # The narrowest rollup that answers: a tenant's, a model's or a key's hours; both: the cells.
    source: QuerySet[Any]
    if model is None and api_key_id is None:
        source = _tenant_hours(tenant)
    elif api_key_id is None:
        source = UsageHourlyModel.objects.filter(tenant_id=tenant.pk, requested_model=model)
    elif model is None:
        source = UsageHourlyKey.objects.filter(tenant_id=tenant.pk, api_key_id=api_key_id)
    else:
        source = UsageHourly.objects.filter(tenant_id=tenant.pk, requested_model=model, api_key_id=api_key_id)
    rows = _bucketed(source, span, **sums)
    series = []
    for key in span.keys:
        row = rows.get((key,))
        if row is None:
            series.append(Speed(span.bucket_start(key), 0, (None,) * 3, (None,) * 3, None))
            continue
        series.append(
            Speed(
                start=span.bucket_start(key),
                requests=int(row["requests"]),
                latency=_percentiles([int(row[name]) for name in latency]),
                ttft=_percentiles([int(row[name]) for name in ttft]),
                tokens_per_second=_tokens_per_second(
                    int(row["generation_tokens"]), int(row["generation_us"])
                ),
            )
        )
    return series


@dataclass(frozen=True)
class ModelSeries:
    models: list[ModelTokens]  # over the whole range, most tokens first
    shown: list[str]  # the models with a series of their own; the rest sum up as OTHER
    tokens: dict[str, list[int]]  # per shown model (and OTHER): tokens per bucket


OTHER = "(other models)"


def tokens_by_model(*, tenant: Tenant, span: Range, series_limit: int = 6) -> ModelSeries:
    """Tokens (prompt + completion) per requested model: totals over the range, and per bucket for
    the `series_limit` biggest models (the others summed)."""
    rows = _bucketed(
        UsageHourlyModel.objects.filter(tenant_id=tenant.pk),
        span,
        "requested_model",
        n=Sum("requests"),
        p=Sum("prompt_tokens"),
        k=Sum("cached_tokens"),
        c=Sum("completion_tokens"),
        usd=Sum("cost"),
    )
    totals: dict[str, list[Any]] = {}
    for (_, name), row in rows.items():
        total = totals.setdefault(name, [0, 0, 0, 0, Decimal(0)])
        for index, column in enumerate(("n", "p", "k", "c")):
            total[index] += int(row[column])
        total[4] += Decimal(row["usd"])
    models = sorted(
        (ModelTokens(name, n, p, k, c, usd) for name, (n, p, k, c, usd) in totals.items()),
        key=lambda model: (-model.tokens, model.model),
    )
    shown = [model.model for model in models[:series_limit]]
    position = {key: index for index, key in enumerate(span.keys)}
    tokens: dict[str, list[int]] = {name: [0] * len(span.keys) for name in shown}
    if len(models) > series_limit:
        tokens[OTHER] = [0] * len(span.keys)
    for (key, name), row in rows.items():
        at = position.get(key)
        if at is not None:
            tokens[name if name in shown else OTHER][at] += int(row["p"]) + int(row["c"])
    return ModelSeries(models=models, shown=shown, tokens=tokens)


@dataclass(frozen=True)
class Spender:
    """A key, model or end user, with what it spent over a range."""

    value: str  # the key's id, the model's or the end user's name ("" : none)
    label: str
    requests: int
    tokens: int
    cost: Decimal


TOP_BY = {"key": "api_key_id", "model": "requested_model", "end_user": "end_user"}


def top_spenders(*, tenant: Tenant, span: Range, by: str, limit: int = 10) -> list[Spender]:
    """The keys, requested models or end users that spent most over the range (ties: most calls)."""
    column = TOP_BY[by]
    source: QuerySet[Any] = {
        "key": UsageHourlyKey.objects.all(),
        "model": UsageHourlyModel.objects.all(),
        "end_user": UsageHourly.objects.all(),
    }[by]
    rows = source.filter(tenant_id=tenant.pk, hour__gte=span.start, hour__lt=span.end)
    if by == "end_user":
        rows = rows.exclude(end_user="")  # the partial index usagehourly_end_user_spend
    ranked = list(
        rows.values(column)
        .annotate(n=Sum("requests"), t=Sum("prompt_tokens") + Sum("completion_tokens"), usd=Sum("cost"))
        .order_by("-usd", "-n", column)[:limit]
    )
    keys: dict[int, ApiKey] = {}
    if by == "key":
        keys = {
            key.pk: key
            for key in ApiKey.objects.filter(tenant=tenant, pk__in=[row[column] for row in ranked]).only(
                "name", "prefix"
            )
        }

    def label(value: Any) -> str:
        if by != "key":
            return str(value)
        key = keys.get(value)
        if key is None:
            return "end-user tokens" if value == 0 else f"deleted key #{value}"
        return f"{key.name} (th-{key.prefix}…)"

    return [
        Spender(str(row[column]), label(row[column]), int(row["n"]), int(row["t"]), Decimal(row["usd"]))
        for row in ranked
    ]


def range_models(*, tenant: Tenant, span: Range) -> list[str]:
    """The requested models with calls in the range (for the latency chart's picker)."""
    return list(
        UsageHourlyModel.objects.filter(tenant_id=tenant.pk, hour__gte=span.start, hour__lt=span.end)
        .order_by("requested_model")
        .values_list("requested_model", flat=True)
        .distinct()
    )
