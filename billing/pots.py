"""Where budget and credit counters live in Redis, and how writers outside the hot path touch them.

A *pot* is one Redis hash: a budget for one subject and period (`spent`, `reserved`), or a tenant's
prepaid credits (`credit` = the ledger's non-usage lines, `spent` = usage charged). Reservations of
calls in flight are fields `r:<request id>` of the same hash, with their expiry in a sorted set
beside it, so a reservation left by a process that died goes away by itself. The gateway's
admission script (gateway/governor.py) creates a pot from the database on first use.
"""

from __future__ import annotations

from django.conf import settings

from config.redis import redis_key, sync_client

# Top-ups reach a pot that exists; a pot that does not exist yet is created from the ledger, which
# already holds the top-up, so it must not be added twice.
_ADD_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
return false
"""


def budget_pot(budget_id: int | str, label: str, subject: str = "") -> str:
    return redis_key("pot", "b", str(budget_id), label, subject)


def credit_pot(tenant_id: int) -> str:
    return redis_key("pot", "c", str(tenant_id))


def credits_changed(tenant_id: int, delta_nanos: int) -> None:
    """A credit line other than a usage charge was committed (top-up, redemption, refund,
    adjustment): tell the gateways. Call it from `transaction.on_commit`. Without Redis (embedded),
    the in-process governor re-reads the ledger by itself within a few seconds."""
    if not settings.REDIS_URL or not delta_nanos:
        return
    sync_client().eval(_ADD_IF_PRESENT, 1, credit_pot(tenant_id), "credit", delta_nanos)
