"""Hourly rollups of the usage rows (billing.models.UsageHourly).

`rollups_add(records)` adds usage rows to their hour's cells (UsageHourly: tenant × key × end user
× requested × served model × hour), to their tenant's, requested model's and key's hour
(UsageHourlyTenant, UsageHourlyModel, UsageHourlyKey: `DERIVED`) and, for calls that named an agent
session, to their session's hour (UsageHourlySession), and to their provider's and deployment's
hour (UsageHourlyDeployment, with the upstream attempts of their attempt logs), one upsert each. The usage
writer calls it in the transaction that inserts those rows, with only the rows the insert reported
as new (`INSERT … ON CONFLICT DO NOTHING RETURNING`), so each call is counted exactly once and
the rollups can never disagree with the raw rows. `cells_of(records)` is the same arithmetic
without the write: reconciliation compares it with what is stored, and re-derives from it.

Cells are upserted in key order, so two writers adding to the same cells take their row locks in
the same order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import DecimalField, Field, Model

from billing import histograms
from billing.events import STREAM_BROKEN
from billing.models import (
    ATTEMPT_COLUMNS,
    ERROR_CLASSES,
    GENERATION_COLUMNS,
    UsageHourly,
    UsageHourlyDeployment,
    UsageHourlyKey,
    UsageHourlyModel,
    UsageHourlySession,
    UsageHourlyTenant,
    UsageRecord,
)

# (tenant_id, hour, api_key_id, end_user, requested_model, served_model): the unique cell.
CellKey = tuple[int, datetime, int, str, str, str]
KEY_COLUMNS = ("tenant_id", "hour", "api_key_id", "end_user", "requested_model", "served_model")
COUNT_COLUMNS: tuple[str, ...] = (
    "requests",
    *ERROR_CLASSES,
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "cache_hits",
    "estimated",
    "streamed",
    *histograms.ALL_COLUMNS,
    *GENERATION_COLUMNS,
)
SUM_COLUMNS: tuple[str, ...] = (*COUNT_COLUMNS, "cost", "saved_cost")  # what a cell adds up
_INDEX = {name: index for index, name in enumerate(COUNT_COLUMNS)}
_REQUESTS = _INDEX["requests"]
_PROMPT, _CACHED, _COMPLETION = _INDEX["prompt_tokens"], _INDEX["cached_tokens"], _INDEX["completion_tokens"]
_CACHE_WRITE = _INDEX["cache_write_tokens"]
_CACHE_HITS, _ESTIMATED, _STREAMED = _INDEX["cache_hits"], _INDEX["estimated"], _INDEX["streamed"]
_LATENCY, _TTFT, _UPSTREAM, _OVERHEAD = (_INDEX[histograms.column(name, 0)] for name in histograms.HISTOGRAMS)
_GEN_CALLS, _GEN_TOKENS, _GEN_US = (_INDEX[name] for name in GENERATION_COLUMNS)
_INVALID_REQUEST = {400, 404, 405, 409, 411, 413, 414, 415, 416, 422, 431}


def error_class(status: int, error_type: str = "") -> str | None:
    """The error column a call counts in (None: not an error). A stream that broke after its 200
    (`STREAM_BROKEN`, also when its row was sanitised) counts with the upstream's failures, where
    the 502 it would have been, had it broken before its first byte, counts."""
    if status < 400:
        return "errors_5xx" if error_type.endswith(STREAM_BROKEN) else None
    if status == 499:
        return "errors_client_closed"
    if status >= 500:
        return "errors_5xx"
    if status in _INVALID_REQUEST:
        return "errors_invalid_request"
    return {
        401: "errors_authentication",
        402: "errors_budget",
        403: "errors_permission",
        429: "errors_rate_limit",
    }.get(status, "errors_other_4xx")


_ERROR_INDEX = {status: _INDEX[name] for status in range(400, 600) if (name := error_class(status))}
_BROKEN_STREAM = _INDEX["errors_5xx"]


def _micros(millis: Decimal | None) -> int | None:
    return None if millis is None else int(millis * 1000)


class Cell:
    """The sums of one cell: integer counts in COUNT_COLUMNS order, the cost, and what the cache
    hits saved."""

    __slots__ = ("cost", "counts", "saved_cost")

    def __init__(self) -> None:
        self.counts = [0] * len(COUNT_COLUMNS)
        self.cost = Decimal(0)
        self.saved_cost = Decimal(0)

    def add(self, record: UsageRecord) -> None:
        self.add_facts(
            status=record.status,
            error_type=record.error_type,
            prompt_tokens=record.prompt_tokens,
            cached_tokens=record.cached_tokens,
            completion_tokens=record.completion_tokens,
            cache_write_tokens=record.cache_write_tokens,
            cache_hit=record.cache_hit,
            estimated=record.usage_estimated,
            streamed=record.streamed,
            cost=record.cost,
            latency_us=_micros(record.latency_ms),
            ttft_us=_micros(record.ttft_ms),
            upstream_us=_micros(record.upstream_latency_ms),
            overhead_us=_micros(record.overhead_ms),
            saved_cost=record.saved_cost,
        )

    def add_facts(
        self,
        *,
        status: int,
        error_type: str,
        prompt_tokens: int,
        cached_tokens: int,
        completion_tokens: int,
        cache_hit: bool,
        estimated: bool,
        streamed: bool,
        cost: Decimal,
        latency_us: int | None,
        ttft_us: int | None,
        upstream_us: int | None,
        overhead_us: int | None,
        cache_write_tokens: int = 0,
        saved_cost: Decimal = Decimal(0),
    ) -> None:
        """Add one call. For writers that have the facts without a UsageRecord (usage_seed): the
        durations are whole microseconds, as the row's milliseconds (3 decimals) say them."""
        counts = self.counts
        counts[_REQUESTS] += 1
        error = _ERROR_INDEX.get(status)
        if error is not None:
            counts[error] += 1
        elif status < 400 and error_type and error_type.endswith(STREAM_BROKEN):
            counts[_BROKEN_STREAM] += 1  # as `error_class` says
        counts[_PROMPT] += prompt_tokens
        counts[_CACHED] += cached_tokens
        counts[_COMPLETION] += completion_tokens
        counts[_CACHE_WRITE] += cache_write_tokens
        counts[_CACHE_HITS] += cache_hit
        counts[_ESTIMATED] += estimated
        counts[_STREAMED] += streamed
        self.cost += cost
        self.saved_cost += saved_cost
        bucket_of = histograms.bucket_of
        if latency_us is not None:
            counts[_LATENCY + bucket_of(latency_us)] += 1
        if ttft_us is not None:
            counts[_TTFT + bucket_of(ttft_us)] += 1
        if upstream_us is not None:
            counts[_UPSTREAM + bucket_of(upstream_us)] += 1
        if overhead_us is not None:
            counts[_OVERHEAD + bucket_of(overhead_us)] += 1
        if (
            streamed
            and ttft_us is not None
            and latency_us is not None
            and latency_us > ttft_us
            and completion_tokens > 0
            and status < 400
            and not cache_hit
            and not estimated
            and not error_type.endswith(STREAM_BROKEN)
        ):
            # Output speed (see billing.models.GENERATION_COLUMNS): tokens over the time from the
            # first token to the last, of the streams that completed with the upstream's counts.
            counts[_GEN_CALLS] += 1
            counts[_GEN_TOKENS] += completion_tokens
            counts[_GEN_US] += latency_us - ttft_us

    def merge(self, other: Cell) -> None:
        counts = self.counts
        for index, count in enumerate(other.counts):
            counts[index] += count
        self.cost += other.cost
        self.saved_cost += other.saved_cost

    def values(self) -> tuple[Any, ...]:
        return (*self.counts, self.cost, self.saved_cost)


class SessionCell:
    """The sums of an agent session's hour (UsageHourlySession), in SESSION_SUM_COLUMNS order."""

    __slots__ = ("cost", "counts")

    def __init__(self) -> None:
        self.counts = [0] * (len(SESSION_SUM_COLUMNS) - 1)
        self.cost = Decimal(0)

    def add(self, record: UsageRecord) -> None:
        counts = self.counts
        counts[0] += 1
        counts[1] += error_class(record.status, record.error_type) is not None
        counts[2] += record.prompt_tokens
        counts[3] += record.cached_tokens
        counts[4] += record.cache_write_tokens
        counts[5] += record.completion_tokens
        self.cost += record.cost

    def values(self) -> tuple[Any, ...]:
        return (*self.counts, self.cost)


# (tenant_id, hour, session): a session's hour. Errors: every call `error_class` counts as one.
SessionKey = tuple[int, datetime, str]
SESSION_KEY_COLUMNS = ("tenant_id", "hour", "session")
SESSION_SUM_COLUMNS = (
    "requests",
    "errors",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "cost",
)


def session_cells_of(records: Iterable[UsageRecord]) -> dict[SessionKey, SessionCell]:
    """The session × hour sums of the rows that named a session (the others have none)."""
    sessions: dict[SessionKey, SessionCell] = {}
    for record in records:
        if record.session:
            key = (record.tenant_id or 0, hour_of(record.created_at), record.session)
            cell = sessions.get(key)
            if cell is None:
                cell = sessions[key] = SessionCell()
            cell.add(record)
    return sessions


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def cell_key(record: UsageRecord) -> CellKey:
    return (
        record.tenant_id or 0,
        hour_of(record.created_at),
        record.api_key_id or 0,
        record.end_user,
        record.requested_model,
        record.served_model,
    )


def cells_of(records: Iterable[UsageRecord]) -> dict[CellKey, Cell]:
    cells: dict[CellKey, Cell] = {}
    for record in records:
        key = cell_key(record)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell()
        cell.add(record)
    return cells


TenantKey = tuple[int, datetime]
TENANT_KEY_COLUMNS = ("tenant_id", "hour")


def tenant_cells_of(cells: dict[CellKey, Cell]) -> dict[TenantKey, Cell]:
    """The tenant × hour sums of cells (UsageHourlyTenant)."""
    tenants: dict[TenantKey, Cell] = {}
    for (tenant_id, hour, *_), cell in cells.items():
        total = tenants.get((tenant_id, hour))
        if total is None:
            total = tenants[(tenant_id, hour)] = Cell()
        total.merge(cell)
    return tenants


def _sums_by(cells: dict[CellKey, Cell], positions: tuple[int, ...]) -> dict[Any, Cell]:
    sums: dict[Any, Cell] = {}
    for key, cell in cells.items():
        short = tuple(key[position] for position in positions)
        total = sums.get(short)
        if total is None:
            total = sums[short] = Cell()
        total.merge(cell)
    return sums


MODEL_KEY_COLUMNS = ("tenant_id", "hour", "requested_model")
APIKEY_KEY_COLUMNS = ("tenant_id", "hour", "api_key_id")


def model_cells_of(cells: dict[CellKey, Cell]) -> dict[Any, Cell]:
    """The tenant × hour × requested model sums of cells (UsageHourlyModel)."""
    return _sums_by(cells, (0, 1, 4))


def key_cells_of(cells: dict[CellKey, Cell]) -> dict[Any, Cell]:
    """The tenant × hour × key sums of cells (UsageHourlyKey)."""
    return _sums_by(cells, (0, 1, 2))


# The tables summed from the cells, each with its key columns and how its cells follow from them.
DERIVED: tuple[tuple[type[Model], tuple[str, ...], Callable[[dict[CellKey, Cell]], dict[Any, Cell]]], ...] = (
    (UsageHourlyTenant, TENANT_KEY_COLUMNS, tenant_cells_of),
    (UsageHourlyModel, MODEL_KEY_COLUMNS, model_cells_of),
    (UsageHourlyKey, APIKEY_KEY_COLUMNS, key_cells_of),
)


def _upsert_sql(model: type[Model], keys: tuple[str, ...], rows: int, sums: tuple[str, ...]) -> str:
    """PostgreSQL: one array a column (`unnest`), so the statement's parameters do not grow with
    the number of cells; elsewhere a VALUES list."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = (*keys, *sums)
    if connection.vendor == "postgresql":
        types = [model._meta.get_field(name).db_type(connection) for name in columns]
        source = "SELECT * FROM unnest(" + ", ".join(f"%s::{kind}[]" for kind in types) + ")"  # noqa: S608
    else:
        row = "(" + ", ".join(["%s"] * len(columns)) + ")"
        source = "VALUES " + ", ".join([row] * rows)
    updates = ", ".join(f"{quote(name)} = {table}.{quote(name)} + EXCLUDED.{quote(name)}" for name in sums)
    # Only names and types from the model's own metadata are formatted in; every value is a parameter.
    insert = f"INSERT INTO {table} ({', '.join(quote(name) for name in columns)}) "
    conflict = f" ON CONFLICT ({', '.join(quote(name) for name in keys)}) DO UPDATE SET {updates}"
    return insert + source + conflict


def upsert(
    model: type[Model],
    keys: tuple[str, ...],
    cells: dict[Any, Cell]
    | dict[Any, SessionCell]
    | dict[Any, Cell | SessionCell]
    | dict[Any, DeploymentCell],
    sums: tuple[str, ...] = SUM_COLUMNS,
) -> None:
    """Add cells (keyed by `keys`' values, summing `sums`) to a rollup table, creating the new ones,
    in key order: two writers adding to the same cells lock them in the same order, so they cannot
    deadlock."""
    if not cells:
        return
    items: list[tuple[Any, Cell | SessionCell]] = sorted(cells.items(), key=lambda item: item[0])
    ordered = [[*key, *cell.values()] for key, cell in items]
    hour_at = keys.index("hour")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for start in range(0, len(ordered), 5000):
                rows = ordered[start : start + 5000]
                cursor.execute(
                    _upsert_sql(model, keys, len(rows), sums),
                    [list(column) for column in zip(*rows, strict=True)],
                )
            return
        per_statement = max(1, (connection.features.max_query_params or 999) // len(ordered[0]))
        hour_field = model._meta.get_field("hour")
        assert isinstance(hour_field, Field)
        # The money columns (cost, saved_cost): Decimals, as the backend stores them.
        money = [
            (len(keys) + index, field)
            for index, name in enumerate(sums)
            if isinstance(field := model._meta.get_field(name), DecimalField)
        ]
        for start in range(0, len(ordered), per_statement):
            chunk = ordered[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                row[hour_at] = hour_field.get_db_prep_save(row[hour_at], connection)
                for at, field in money:
                    row[at] = field.get_db_prep_save(row[at], connection)
                params.extend(row)
            cursor.execute(_upsert_sql(model, keys, len(chunk), sums), params)


def cells_save(cells: dict[CellKey, Cell]) -> None:
    """Add cells to the stored rollups, both the cells and their tenant × hour sums."""
    upsert(UsageHourly, KEY_COLUMNS, cells)
    derived_cells_save(cells)


def derived_cells_save(cells: dict[CellKey, Cell]) -> None:
    """Add cells' sums to the tables derived from them (tenant, model and key hours)."""
    for model, keys, derive in DERIVED:
        upsert(model, keys, derive(cells))


def tenant_cells_save(cells: dict[TenantKey, Cell]) -> None:
    upsert(UsageHourlyTenant, TENANT_KEY_COLUMNS, cells)


def session_cells_save(cells: dict[SessionKey, SessionCell]) -> None:
    upsert(UsageHourlySession, SESSION_KEY_COLUMNS, cells, SESSION_SUM_COLUMNS)


# --- provider × deployment hours (UsageHourlyDeployment) ---------------------------------------------

# (hour, provider, deployment_id): a deployment's hour (0: no deployment).
DeploymentKey = tuple[datetime, str, int]
DEPLOYMENT_KEY_COLUMNS = ("hour", "provider", "deployment_id")
DEPLOYMENT_SUM_COLUMNS: tuple[str, ...] = (*COUNT_COLUMNS, *ATTEMPT_COLUMNS, "cost", "saved_cost")
_FAILED_ATTEMPT = {0, 408, 429}  # and every 5xx: what says the upstream is unwell


class DeploymentCell(Cell):
    """A deployment-hour: the calls it served (a Cell) and the upstream attempts it got
    (ATTEMPT_COLUMNS order)."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        super().__init__()
        self.attempts = [0] * len(ATTEMPT_COLUMNS)

    def add_attempt(self, status: int) -> None:
        attempts = self.attempts
        attempts[0] += 1
        if status in _FAILED_ATTEMPT or status >= 500:
            attempts[1] += 1
        if status == 429:
            attempts[2] += 1

    def values(self) -> tuple[Any, ...]:
        return (*self.counts, *self.attempts, self.cost, self.saved_cost)


def _deployment_cell(cells: dict[DeploymentKey, DeploymentCell], key: DeploymentKey) -> DeploymentCell:
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = DeploymentCell()
    return cell


def deployment_cell_add(cells: dict[DeploymentKey, DeploymentCell], record: UsageRecord) -> None:
    """Add a usage row to its deployment-hour (what served it), and each of its upstream attempts to
    the hour of the deployment it went to (see UsageHourlyDeployment for the provider of those)."""
    hour = hour_of(record.created_at)
    served = record.deployment_id or 0
    _deployment_cell(cells, (hour, record.provider, served)).add(record)
    for attempt in record.attempt_log or ():
        deployment = attempt.get("deployment_id") if isinstance(attempt, dict) else None
        if not isinstance(deployment, int):
            continue
        status = attempt.get("status")
        provider = record.provider if deployment == served else ""
        _deployment_cell(cells, (hour, provider, deployment)).add_attempt(
            status if isinstance(status, int) else 0
        )


def deployment_cells_of(records: Iterable[UsageRecord]) -> dict[DeploymentKey, DeploymentCell]:
    cells: dict[DeploymentKey, DeploymentCell] = {}
    for record in records:
        deployment_cell_add(cells, record)
    return cells


def deployment_cells_save(cells: dict[DeploymentKey, DeploymentCell]) -> None:
    upsert(UsageHourlyDeployment, DEPLOYMENT_KEY_COLUMNS, cells, DEPLOYMENT_SUM_COLUMNS)


def rollups_add(records: Iterable[UsageRecord]) -> None:
    """Add usage rows, newly inserted in the current transaction, to their hourly cells."""
    rows = list(records)
    cells_save(cells_of(rows))
    session_cells_save(session_cells_of(rows))
    deployment_cells_save(deployment_cells_of(rows))
