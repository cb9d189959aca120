"""Writes to billing: usage records (and, later, budgets, credits and rollups)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from billing.models import ModelPrice, UsageRecord
from billing.pricing import nanos_to_dollars


def _ms(micros: Any) -> Decimal | None:
    if micros is None:
        return None
    return Decimal(int(micros)).scaleb(-3)


def usage_record_from_event(event: dict[str, Any]) -> UsageRecord:
    """Build (not save) a usage row from a usage event; see billing.usage for the event's fields."""
    return UsageRecord(
        request_id=event["request_id"],
        client_request_id=event.get("client_request_id") or "",
        created_at=datetime.fromtimestamp(int(event["created_at_us"]) / 1_000_000, tz=UTC),
        tenant_id=event.get("tenant_id"),
        api_key_id=event.get("api_key_id"),
        end_user=event.get("end_user") or "",
        endpoint=event.get("endpoint") or "chat.completions",
        requested_model=(event.get("requested_model") or "")[:200],
        served_model=event.get("served_model") or "",
        provider=event.get("provider") or "",
        deployment_id=event.get("deployment_id"),
        prompt_tokens=int(event.get("prompt_tokens") or 0),
        cached_tokens=int(event.get("cached_tokens") or 0),
        completion_tokens=int(event.get("completion_tokens") or 0),
        usage_estimated=bool(event.get("usage_estimated")),
        cost=nanos_to_dollars(int(event.get("cost_nanos") or 0)),
        status=int(event["status"]),
        error_type=event.get("error_type") or "",
        streamed=bool(event.get("streamed")),
        cache_hit=bool(event.get("cache_hit")),
        attempts=int(event.get("attempts") or 0),
        latency_ms=_ms(event.get("latency_us")) or Decimal(0),
        ttft_ms=_ms(event.get("ttft_us")),
        upstream_latency_ms=_ms(event.get("upstream_latency_us")),
        overhead_ms=_ms(event.get("overhead_us")) or Decimal(0),
        client_ip=event.get("client_ip"),
    )


@transaction.atomic
def usage_records_save(*, records: list[UsageRecord]) -> int:
    """Insert usage rows idempotently: a call already recorded (same request id) is skipped.

    Returns how many rows were new. Safe to call again with the same batch after a crash.
    """
    if not records:
        return 0
    ids = [record.request_id for record in records]
    before = UsageRecord.objects.filter(request_id__in=ids).count()
    UsageRecord.objects.bulk_create(records, ignore_conflicts=True, batch_size=500)
    after = UsageRecord.objects.filter(request_id__in=ids).count()
    return after - before


def usage_records_insert(*, events: Iterable[dict[str, Any]]) -> int:
    """Insert the usage rows of a batch of usage events (see `usage_records_save`)."""
    return usage_records_save(records=[usage_record_from_event(event) for event in events])


@transaction.atomic
def model_price_set(
    *,
    model: str,
    input_per_mtok: Decimal,
    cached_input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    effective_from: datetime,
) -> ModelPrice:
    """Record the price of a model from a date; an existing price for that exact date is replaced."""
    price, _ = ModelPrice.objects.update_or_create(
        model=model,
        effective_from=effective_from,
        defaults={
            "input_per_mtok": input_per_mtok,
            "cached_input_per_mtok": cached_input_per_mtok,
            "output_per_mtok": output_per_mtok,
        },
    )
    return price
