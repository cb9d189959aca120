"""Reads of billing data."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db.models import QuerySet

from billing.models import ModelPrice, UsageRecord
from billing.pricing import PriceNanos


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
