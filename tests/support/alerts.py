"""Helpers for the budget alert tests: a tenant with a budget, and usage that costs money."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

_request_ids = itertools.count(1)


def tenant(slug: str = "acme", *, name: str = "Acme", tz: str = "UTC") -> Any:
    from accounts.services import tenant_create

    return tenant_create(name=name, slug=slug, timezone_name=tz)


def budget(tenant: Any, **fields: Any) -> Any:
    from billing.models import Budget

    fields.setdefault("amount", Decimal(100))
    fields.setdefault("period", "month")
    fields.setdefault("emails", ["finance@acme.test"])
    made = Budget(tenant=tenant, **fields)
    made.full_clean()
    made.save()
    return made


def usage_event(tenant: Any, usd: str, *, at: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    """A usage event as the gateway emits it, costing `usd` dollars, made `at` (default: now)."""
    moment = at or timezone.now()
    return {
        "request_id": f"alert-test-{next(_request_ids)}",
        "created_at_us": (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
        "tenant_id": tenant.pk,
        "api_key_id": None,
        "requested_model": "gpt-4.1",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_nanos": int(Decimal(usd) * 1_000_000_000),
        "status": 200,
        "latency_us": 1_000,
        "overhead_us": 100,
        **overrides,
    }


def spend(tenant: Any, usd: str, *, at: datetime | None = None, **overrides: Any) -> None:
    """Record a call costing `usd` straight into the ledger (no budget check is triggered)."""
    from billing.services import usage_events_record

    outcome = usage_events_record(events=[usage_event(tenant, usd, at=at, **overrides)])
    assert outcome.written == 1 and not outcome.rejected
