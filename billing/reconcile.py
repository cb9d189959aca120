"""Re-derive the gateways' budget and credit counters (billing/pots.py) from the ledger, exactly.

Why a counter can drift: a call settled while Redis was unreachable (fail-open, or a settlement
that failed), a pot created from the database while some of its calls were still in the usage
stream, an operator's hand. Why comparing is not trivial: calls keep settling while we look, and a
settled call reaches PostgreSQL only when the drain has written its event.

What makes it exact: settlement adds a call's cost to its pots AND appends its usage event to the
stream in one Lua script (gateway/governor.py), so every cost in a pot is either in the database or
still in the stream. The comparison therefore takes:
  0. L0: the oldest stream entry the drain may not have written yet (the oldest pending entry, or
     the first after the group's last delivered one);
  1. a REPEATABLE READ snapshot of the database: each pot's ledger total;
  2. one Lua step: every pot's counters and every stream entry from L0 on, at the same instant;
  3. in the same database snapshot, which of those entries' rows already exist.
Expected = ledger total (1) + the cost of the entries (2) whose rows were not in the snapshot (3).
An entry written after (1) and acknowledged before (2) is still at or after L0, so it is counted
from the stream; nothing is counted twice. A difference is repaired by adding it (HINCRBY), so calls
that settle during the repair are not lost, and logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction

from billing import pots
from billing.models import UsageRecord
from billing.usage import FIELD, GROUP, stream_key
from config.redis import redis_key, worker_client

logger = logging.getLogger(__name__)

# A longer backlog means the drain is far behind (or the database down): the comparison waits.
MAX_BACKLOG = 200_000

_SNAPSHOT = """
local out = {}
for i = 1, #KEYS - 1 do
  local h = redis.call('HMGET', KEYS[i], 'spent', 'credit', 'meta')
  out[i] = {h[1] or false, h[2] or false, h[3] or false}
end
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[#KEYS], ARGV[1], '+')
end
return {out, entries}
"""


@dataclass(frozen=True)
class Difference:
    pot: str
    field: str  # "spent" or "credit"
    counter: int  # nano-dollars in Redis
    ledger: int  # nano-dollars the ledger says

    def __str__(self) -> str:
        return f"{self.pot} {self.field}: counter {self.counter}, ledger {self.ledger} (nano-dollars)"


def _pot_keys(client: redis.Redis) -> list[str]:
    pattern = redis_key("pot", "*")
    return sorted(
        key.decode() for key in client.scan_iter(match=pattern, count=1000) if not key.endswith(b":x")
    )


def _first_unwritten(client: redis.Redis) -> str:
    """L0: the first stream entry whose row may not be in the database yet ('' if no stream)."""
    try:
        groups = client.xinfo_groups(stream_key())
    except redis.ResponseError:
        return ""  # no stream yet: nothing is waiting
    group = next((g for g in groups if _text(g.get("name")) == GROUP), None)
    if group is None:
        return "-"  # nothing was ever read: every entry is waiting
    pending: Any = client.xpending(stream_key(), GROUP)
    if pending and pending.get("pending"):
        return _text(pending["min"])
    return "(" + _text(group.get("last-delivered-id"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _matches(meta: dict[str, Any], event: dict[str, Any]) -> bool:
    if event.get("tenant_id") != meta.get("tenant"):
        return False
    if meta.get("scope") == "credits":
        return bool(event.get("credits"))
    created = (event.get("created_at_us") or 0) / 1_000_000
    if not meta["start"] <= created < meta["end"]:
        return False
    if meta["scope"] == "key":
        return bool(event.get("api_key_id") == meta["key"])
    if meta["scope"] == "end_user":
        return bool(event.get("end_user") == meta["end_user"])
    return True


def counters_reconcile(*, fix: bool = True) -> list[Difference]:
    """Compare every pot with the ledger; with `fix`, add each difference to its counter."""
    if not settings.REDIS_URL or connection.vendor != "postgresql":
        return []
    client = worker_client()
    try:
        keys = _pot_keys(client)
        if not keys:
            return []
        start = _first_unwritten(client)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # (1) The snapshot starts with the first query; the pots' metadata comes from (2), so
            # read it once beforehand to know what to total.
            metas = {}
            for key in keys:
                raw = client.hget(key, "meta")
                if raw:
                    metas[key] = orjson.loads(raw)
            ledger = {key: pots.derive(meta) for key, meta in metas.items()}
            # (2)
            snapshot: Any = client.eval(_SNAPSHOT, len(keys) + 1, *keys, stream_key(), start)
            values, entries = snapshot
            if len(entries) > MAX_BACKLOG:
                logger.warning(
                    "budget counters not reconciled: %s usage events wait in the stream", len(entries)
                )
                return []
            events = []
            for _, flat in entries:  # [id, [field, value, ...]] as a script returns them
                fields = dict(zip(flat[::2], flat[1::2], strict=False))
                try:
                    events.append(orjson.loads(fields[FIELD]))
                except (KeyError, orjson.JSONDecodeError):
                    continue
            # (3)
            ids = [e.get("request_id") for e in events if isinstance(e.get("request_id"), str)]
            written = set(UsageRecord.objects.filter(request_id__in=ids).values_list("request_id", flat=True))
        waiting = [e for e in events if e.get("request_id") not in written and e.get("status") is not None]
        differences = []
        for key, (spent_raw, credit_raw, _) in zip(keys, values, strict=True):
            meta = metas.get(key)
            if meta is None or spent_raw is None:
                continue
            ledger_spent, ledger_credit = ledger[key]
            ledger_spent += sum(int(e.get("cost_nanos") or 0) for e in waiting if _matches(meta, e))
            if int(spent_raw) != ledger_spent:
                differences.append(Difference(key, "spent", int(spent_raw), ledger_spent))
            if meta.get("scope") == "credits" and int(credit_raw or 0) != ledger_credit:
                differences.append(Difference(key, "credit", int(credit_raw or 0), ledger_credit))
        for difference in differences:
            if fix:
                client.hincrby(difference.pot, difference.field, difference.ledger - difference.counter)
            logger.warning(
                "budget counter %s%s", difference, " repaired from the ledger" if fix else " differs"
            )
        return differences
    finally:
        client.close()
