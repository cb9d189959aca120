"""Reconciliation: the budget and credit counters against the ledger (`counters_reconcile`), and
the raw usage rows against their hourly rollups and the credit ledger (`usage_reconcile`).

Re-derive the gateways' budget and credit counters (billing/pots.py) from the ledger, exactly.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from billing import pots
from billing.models import (
    CreditEntry,
    ReconcileRun,
    UsageHourly,
    UsageHourlyDeployment,
    UsageHourlyKey,
    UsageHourlyModel,
    UsageHourlySession,
    UsageHourlyTenant,
    UsageRecord,
)
from billing.rollups import (
    DEPLOYMENT_KEY_COLUMNS,
    DEPLOYMENT_SUM_COLUMNS,
    DERIVED,
    KEY_COLUMNS,
    SESSION_KEY_COLUMNS,
    SESSION_SUM_COLUMNS,
    SUM_COLUMNS,
    Cell,
    CellKey,
    DeploymentCell,
    DeploymentKey,
    SessionCell,
    SessionKey,
    cell_key,
    deployment_cell_add,
    hour_of,
    upsert,
)
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


def _without_legacy(client: redis.Redis, keys: list[str], metas: dict[str, Any], *, fix: bool) -> list[str]:
    """The pots to compare: not those whose key is not the one their metadata names. Such a pot was
    written before counters named their tenant (a plan's monthly budget was then ONE counter for
    every tenant on the plan, filled from whichever tenant created it): no gateway admits against
    it any more, each tenant's own counter is re-derived from its own ledger on its first call, so
    it is ignored, and removed when fixing."""
    legacy = [key for key in keys if key in metas and pots.pot_key(metas[key]) != key]
    for key in legacy:
        del metas[key]
        if fix:
            client.delete(key, key + ":x")
        logger.warning(
            "budget counter %s predates per-tenant counters: ignored%s (each tenant's own counter is "
            "derived from its ledger)",
            key,
            ", removed" if fix else "",
        )
    return [key for key in keys if key not in legacy]


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
            keys = _without_legacy(client, keys, metas, fix=fix)
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


# --- raw rows, rollups and the credit ledger ---------------------------------------------------------
#
# The rollups are written in the transaction that inserts their raw rows, from exactly the rows that
# were new, so they can only disagree through a bug or a hand. The comparison recomputes each hour's
# cells from the raw rows with the writer's own arithmetic (billing.rollups.cells_of) and compares
# them with what is stored. Hours whose raw rows the retention has purged are not compared.

RECONCILE_DAYS = 2  # what the daily beat compares when not told where to start
_ROW_FIELDS = (
    "request_id",
    "created_at",
    "tenant_id",
    "api_key_id",
    "end_user",
    "requested_model",
    "served_model",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "usage_estimated",
    "cost",
    "status",
    "error_type",
    "session",
    "streamed",
    "cache_hit",
    "latency_ms",
    "ttft_ms",
    "upstream_latency_ms",
    "overhead_ms",
    "credits",
    "provider",
    "deployment_id",
    "attempt_log",
    "saved_cost",
)


def _first_hour(since: datetime | None) -> datetime:
    """The first whole hour to compare: from `since` (rounded down to its hour), never before the
    first hour whose raw rows are all still kept."""
    now = timezone.now()
    if since is None:
        since = now - timedelta(days=RECONCILE_DAYS)
    kept_from = hour_of(now - timedelta(days=settings.TOLLHOUSE_USAGE_RETENTION_DAYS)) + timedelta(hours=1)
    return max(hour_of(since), kept_from)


@dataclass
class _Raw:
    """What the raw rows say the rollups hold: their cells, their sessions' and deployments' hours."""

    cells: dict[CellKey, Cell]
    sessions: dict[SessionKey, SessionCell]
    deployments: dict[DeploymentKey, DeploymentCell]


def _raw_cells(first_hour: datetime) -> _Raw:
    """The rollups of the raw rows from `first_hour` on, in one pass over them (the writer's own
    arithmetic: billing.rollups.Cell and SessionCell)."""
    rows = UsageRecord.objects.filter(created_at__gte=first_hour).only(*_ROW_FIELDS).order_by()
    raw = _Raw(cells={}, sessions={}, deployments={})
    for record in rows.iterator(chunk_size=5000):
        key = cell_key(record)
        cell = raw.cells.get(key)
        if cell is None:
            cell = raw.cells[key] = Cell()
        cell.add(record)
        if record.session:
            session_key = (key[0], key[1], record.session)
            session = raw.sessions.get(session_key)
            if session is None:
                session = raw.sessions[session_key] = SessionCell()
            session.add(record)
        deployment_cell_add(raw.deployments, record)
    return raw


def _stored(
    model: type[Model], keys: tuple[str, ...], sums: tuple[str, ...], first_hour: datetime
) -> dict[Any, tuple[Any, ...]]:
    stored = {}
    hour_at = keys.index("hour")
    for values in model._default_manager.filter(hour__gte=first_hour).values_list(*keys, *sums):
        key = list(values[: len(keys)])
        key[hour_at] = key[hour_at].astimezone(UTC)
        stored[tuple(key)] = values[len(keys) :]
    return stored


def _describe_cell(model: type[Model], key: tuple[Any, ...]) -> str:
    if model is UsageHourlyTenant:
        tenant_id, hour = key
        return f"tenant rollup {hour:%Y-%m-%d %H}:00Z tenant {tenant_id}"
    if model is UsageHourlyModel:
        tenant_id, hour, requested = key
        return f"model rollup {hour:%Y-%m-%d %H}:00Z tenant {tenant_id} model {requested!r}"
    if model is UsageHourlyKey:
        tenant_id, hour, api_key_id = key
        return f"key rollup {hour:%Y-%m-%d %H}:00Z tenant {tenant_id} key {api_key_id or '-'}"
    if model is UsageHourlyDeployment:
        hour, provider, deployment_id = key
        return f"deployment rollup {hour:%Y-%m-%d %H}:00Z provider {provider or '-'!r} deployment {deployment_id or '-'}"
    if model is UsageHourlySession:
        tenant_id, hour, session = key
        return f"session rollup {hour:%Y-%m-%d %H}:00Z tenant {tenant_id} session {session!r}"
    tenant_id, hour, api_key_id, end_user, requested, served = key
    who = f"tenant {tenant_id} key {api_key_id or '-'}" + (f" end user {end_user!r}" if end_user else "")
    return f"rollup {hour:%Y-%m-%d %H}:00Z {who} model {requested!r}→{served!r}"


def _cell_differences(
    model: type[Model],
    raw: dict[Any, Cell] | dict[Any, SessionCell] | dict[Any, DeploymentCell],
    stored: dict[Any, tuple[Any, ...]],
    sums: tuple[str, ...],
) -> list[str]:
    differences = []
    for key in sorted(set(raw) | set(stored)):
        expected = raw[key].values() if key in raw else tuple(0 for _ in sums)
        found = stored.get(key, tuple(0 for _ in sums))
        if expected == found:
            continue
        wrong = [
            f"{name} raw {want} rollup {have}"
            for name, want, have in zip(sums, expected, found, strict=True)
            if want != have
        ]
        shown = "; ".join(wrong[:6]) + (f"; and {len(wrong) - 6} more columns" if len(wrong) > 6 else "")
        missing = " (no rollup row)" if key not in stored else " (no raw rows)" if key not in raw else ""
        differences.append(f"{_describe_cell(model, key)}{missing}: {shown}")
    return differences


def _derived(derive: Callable[[dict[CellKey, Cell]], dict[Any, Cell]]) -> Callable[[_Raw], dict[Any, Cell]]:
    return lambda raw: derive(raw.cells)


# The rollup tables, each with its key columns, what it sums, and how its cells follow from the raw rows.
_TABLES: tuple[
    tuple[
        type[Model],
        tuple[str, ...],
        tuple[str, ...],
        Callable[[_Raw], dict[Any, Cell] | dict[Any, SessionCell] | dict[Any, DeploymentCell]],
    ],
    ...,
] = (
    (UsageHourly, KEY_COLUMNS, SUM_COLUMNS, lambda raw: raw.cells),
    *((model, keys, SUM_COLUMNS, _derived(derive)) for model, keys, derive in DERIVED),
    (UsageHourlySession, SESSION_KEY_COLUMNS, SESSION_SUM_COLUMNS, lambda raw: raw.sessions),
    (UsageHourlyDeployment, DEPLOYMENT_KEY_COLUMNS, DEPLOYMENT_SUM_COLUMNS, lambda raw: raw.deployments),
)


def _rollup_differences(first_hour: datetime) -> list[str]:
    raw = _raw_cells(first_hour)
    differences = []
    for model, keys, sums, derive in _TABLES:
        differences += _cell_differences(model, derive(raw), _stored(model, keys, sums, first_hour), sums)
    return differences


def _cells_replace(first_hour: datetime) -> None:
    """Make the stored rollups from `first_hour` on exactly what the raw rows say.

    The rollup tables are locked against writers first (SHARE ROW EXCLUSIVE: the drains' upserts
    wait), then the raw rows are read: every row committed before the lock is counted here, and a
    drain that was inserting meanwhile adds its rows' cells after this commits, on top of the
    repaired values.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for model, *_ in _TABLES:
                    cursor.execute(
                        f"LOCK TABLE {connection.ops.quote_name(model._meta.db_table)} IN SHARE ROW EXCLUSIVE MODE"
                    )
        raw = _raw_cells(first_hour)
        for model, keys, sums, derive in _TABLES:
            cells = derive(raw)
            stored = _stored(model, keys, sums, first_hour)
            wrong = {key: cell for key, cell in cells.items() if stored.get(key) != cell.values()}
            for key in [*wrong, *(key for key in stored if key not in cells)]:
                model._default_manager.filter(**dict(zip(keys, key, strict=True))).delete()
            upsert(model, keys, wrong, sums)


def _credit_differences(first_hour: datetime, *, fix: bool) -> list[str]:
    """Every call that ran on credits since `first_hour` has exactly one usage charge of its cost."""
    rows = {
        request_id: (tenant_id, cost)
        for request_id, tenant_id, cost in UsageRecord.objects.filter(
            created_at__gte=first_hour, credits=True, cost__gt=0
        ).values_list("request_id", "tenant_id", "cost")
    }
    charges = dict(
        CreditEntry.objects.filter(kind=CreditEntry.Kind.USAGE, request_id__in=list(rows)).values_list(
            "request_id", "amount"
        )
    )
    differences = []
    for request_id, (tenant_id, cost) in sorted(rows.items()):
        charged = charges.get(request_id)
        if charged is not None and -charged == cost:
            continue
        if charged is None:
            differences.append(
                f"credit ledger: call {request_id} of tenant {tenant_id} cost {cost} USD, not charged"
            )
            if fix and tenant_id is not None:
                CreditEntry.objects.bulk_create(
                    [
                        CreditEntry(
                            tenant_id=tenant_id,
                            kind=CreditEntry.Kind.USAGE,
                            amount=-cost,
                            request_id=request_id,
                        )
                    ],
                    ignore_conflicts=True,
                )
        else:
            differences.append(
                f"credit ledger: call {request_id} of tenant {tenant_id} cost {cost} USD, charged {-charged} USD"
            )
            if fix and tenant_id is not None:
                # The ledger is append-only: the difference is settled by an adjustment line.
                CreditEntry.objects.create(
                    tenant_id=tenant_id,
                    kind=CreditEntry.Kind.ADJUSTMENT,
                    amount=-charged - cost,
                    note=f"usage_reconcile: charge of request {request_id} was {-charged} USD, its call cost {cost} USD",
                )
    return differences


def usage_reconcile(*, since: datetime | None = None, fix: bool = False) -> list[str]:
    """Compare raw rows with the hourly rollups, the budget and credit counters, and the credit
    ledger, from `since` (default: the last RECONCILE_DAYS days); returns one line per difference.

    With `fix`, the rollups are re-derived from the raw rows, missing credit charges are added
    (a wrong one is settled by an adjustment line), and the counters are repaired from the ledger
    (counters_reconcile). What it returns is what was found before fixing.
    """
    first_hour = _first_hour(since)
    differences = _rollup_differences(first_hour)
    if differences and fix:
        _cells_replace(first_hour)
    with transaction.atomic():
        differences += _credit_differences(first_hour, fix=fix)
    differences += [f"budget counter {difference}" for difference in counters_reconcile(fix=fix)]
    return differences


# --- the record of each run (the operator overview's "last reconcile") --------------------------------

FIRST_LINES = 20  # differences kept with a run's record (the log has them all)


def reconcile_run_save(
    *, since: datetime | None, differences: list[str], fixed: bool, source: str, seconds: float
) -> ReconcileRun:
    """Record a usage_reconcile run: when, from which hour, how many differences, the first lines."""
    return ReconcileRun.objects.create(
        ran_at=timezone.now(),
        since=_first_hour(since),
        source=source,
        fixed=fixed,
        differences=len(differences),
        first_lines=[line[:500] for line in differences[:FIRST_LINES]],
        seconds=Decimal(f"{seconds:.3f}"),
    )
