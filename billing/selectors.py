"""Reads of billing data."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Max, Min, QuerySet, Sum

from billing.models import ModelPrice, UsageHourlySession, UsageRecord
from billing.pricing import PriceNanos
from billing.rollups import hour_of


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


def usage_for_tenant(*, tenant_id: int) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(tenant_id=tenant_id)


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
