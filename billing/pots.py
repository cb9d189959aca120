"""Where budget and credit counters live in Redis, and how writers outside the hot path touch them.

A *pot* is one Redis hash: a budget for one subject and period (`spent`, `reserved`), or a tenant's
prepaid credits (`credit` = the ledger's non-usage lines, `spent` = usage charged). Reservations of
calls in flight are fields `r:<request id>` of the same hash, with their expiry in a sorted set
beside it, so a reservation left by a process that died goes away by itself. The gateway's
admission script (gateway/governor.py) creates a pot from the database on first use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Q, Sum

from billing.pricing import dollars_to_nanos
from config.redis import redis_key, sync_client

# Top-ups reach a pot that exists; a pot that does not exist yet is created from the ledger, which
# already holds the top-up, so it must not be added twice.
_ADD_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
return false
"""


def budget_pot(tenant_id: int, budget_id: int | str, label: str, subject: str = "") -> str:
    """A budget's counter for one period (`label`) and subject (the end user, or ""). It names its
    tenant: a plan's monthly budget has no row of its own (its id is "plan" for every tenant on the
    plan), and each tenant must still spend from its own counter."""
    return redis_key("pot", "b", str(tenant_id), str(budget_id), label, subject)


def credit_pot(tenant_id: int) -> str:
    return redis_key("pot", "c", str(tenant_id))


def pot_key(meta: dict[str, Any]) -> str | None:
    """The key a pot with this metadata must have, or None when the metadata cannot say (a pot
    written before counters named their tenant: its `meta` has no `label`)."""
    tenant = meta.get("tenant")
    if type(tenant) is not int:
        return None
    if meta.get("scope") == "credits":
        return credit_pot(tenant)
    budget, label, subject = meta.get("budget"), meta.get("label"), meta.get("end_user") or ""
    if not isinstance(budget, int | str) or not isinstance(label, str) or not isinstance(subject, str):
        return None
    return budget_pot(tenant, budget, label, subject)


def credits_changed(tenant_id: int, delta_nanos: int) -> None:
    """A credit line other than a usage charge was committed (top-up, redemption, refund,
    adjustment): tell the gateways. Call it from `transaction.on_commit`. Without Redis (embedded),
    the in-process governor re-reads the ledger by itself within a few seconds."""
    if not settings.REDIS_URL or not delta_nanos:
        return
    sync_client().eval(_ADD_IF_PRESENT, 1, credit_pot(tenant_id), "credit", delta_nanos)


# A budget pot outlives its period by this much, so reconciliation can still compare a period that
# just ended.
KEEP_AFTER_PERIOD_SECONDS = 3 * 24 * 3600


def derive(meta: dict[str, Any]) -> tuple[int, int]:
    """A pot's (spent, credit) in nano-dollars, from the ledger in the database.

    Budget: the cost of the subject's usage rows in the period. Credits: `credit` is the sum of the
    ledger's non-usage lines, `spent` the usage charges (as a positive number).
    """
    from billing.models import CreditEntry, UsageRecord

    if meta.get("scope") == "credits":
        totals = CreditEntry.objects.filter(tenant_id=meta["tenant"]).aggregate(
            credit=Sum("amount", filter=~Q(kind=CreditEntry.Kind.USAGE), default=Decimal(0)),
            charged=Sum("amount", filter=Q(kind=CreditEntry.Kind.USAGE), default=Decimal(0)),
        )
        return dollars_to_nanos(-totals["charged"]), dollars_to_nanos(totals["credit"])
    rows = UsageRecord.objects.filter(
        tenant_id=meta["tenant"],
        created_at__gte=datetime.fromtimestamp(meta["start"], tz=UTC),
        created_at__lt=datetime.fromtimestamp(meta["end"], tz=UTC),
    )
    if meta.get("scope") == "key":
        rows = rows.filter(api_key_id=meta["key"])
    elif meta.get("scope") == "end_user":
        rows = rows.filter(end_user=meta["end_user"])
    spent = rows.aggregate(total=Sum("cost", default=Decimal(0)))["total"]
    return dollars_to_nanos(spent), 0
