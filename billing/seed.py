"""Realistic synthetic usage, written straight into the usage rows and their hourly rollups.

For load tests of the dashboards and the usage pipeline (`manage.py usage_seed`): millions of rows
in minutes. What makes it realistic:

- traffic follows a day in the tenant's time zone (a morning and an afternoon peak, quiet nights,
  weekends at 40 %), with some noise from hour to hour;
- a few heavy keys (Zipf-like weights), two of which pass end-user ids;
- the first models are the popular ones; embeddings models have no output tokens and never stream;
- ~3 % errors of several classes (400, 401, 402, 429, 499, 5xx), each with the shape the gateway
  records (no tokens for a refusal, estimated tokens for a client that left mid-stream, retries
  before a 5xx);
- ~30 % streamed, with a time to first token; log-normal prompt and output sizes and latencies;
- the cost of each call computed as the gateway does (`billing.pricing.cost_nanos`, exact), with
  the operator's ModelPrice in force at the call's time, else a fixed list-price table.

The rows are written in `created_at` order, spread over the last `days` days; request ids are
`seed-<run>-<n>`, so a seeded row is never mistaken for a real call and two runs never collide.
The rollups come from `billing.rollups.Cell.add_facts` (the arithmetic of the live writer) and
are added with `billing.rollups.cells_save` (and the provider × deployment hours with
`deployment_cells_save`) in the transaction of their rows: reconciliation finds
the two tables in agreement, and seeding twice adds up. PostgreSQL gets the rows by COPY (about
200,000 rows a transaction); other databases by bulk insert (slow, for tests only).
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Field

from billing.models import UsageHourly, UsageRecord
from billing.pricing import PriceNanos, cost_nanos, nanos_to_dollars
from billing.rollups import (
    COUNT_COLUMNS,
    KEY_COLUMNS,
    SUM_COLUMNS,
    Cell,
    CellKey,
    DeploymentCell,
    DeploymentKey,
    cells_save,
    deployment_cells_save,
    derived_cells_save,
)

# USD per million tokens (input, cached input, output): public list prices, used for a model the
# operator set no ModelPrice for. The order is also the popularity order of the default models.
LIST_PRICES: dict[str, tuple[str, str, str]] = {
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "claude-sonnet-4": ("3.00", "0.30", "15.00"),
    "gemini-2.5-flash": ("0.30", "0.075", "2.50"),
    "text-embedding-3-small": ("0.02", "0.02", "0"),
    "o4-mini": ("1.10", "0.275", "4.40"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "claude-3-5-haiku": ("0.80", "0.08", "4.00"),
}
DEFAULT_PRICE = ("1.00", "0.25", "4.00")  # a model in neither the price list nor ModelPrice
PROVIDERS = {"gpt": "openai", "o4": "openai", "text": "openai", "claude": "anthropic", "gemini": "gemini"}

# (share of all calls, status, error_type); the rest succeed.
ERRORS: tuple[tuple[float, int, str], ...] = (
    (0.006, 400, "invalid_request_error"),
    (0.003, 401, "invalid_api_key"),
    (0.002, 402, "budget_exceeded"),
    (0.010, 429, "rate_limit_exceeded"),
    (0.005, 499, "client_disconnected"),
    (0.003, 500, "upstream_error"),
    (0.002, 502, "upstream_error"),
    (0.001, 503, "upstream_unavailable"),
    (0.001, 504, "upstream_timeout"),
)
STREAMED_SHARE = 0.30
END_USER_KEYS = 2  # the heaviest keys pass end-user ids ...
END_USER_SHARE = 0.6  # ... on this share of their calls ...
END_USERS = 12  # ... from this many end users
PIECE_ROWS = 20_000  # rows generated at a time (an hour with more is cut in pieces)

# The columns COPY fills, in the order `_copy_line` writes them; every other column takes its default.
COPY_COLUMNS = (
    "request_id",
    "created_at",
    "tenant_id",
    "api_key_id",
    "end_user",
    "endpoint",
    "requested_model",
    "served_model",
    "provider",
    "deployment_id",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "usage_estimated",
    "cost",
    "status",
    "error_type",
    "streamed",
    "cache_hit",
    "attempts",
    "latency_ms",
    "ttft_ms",
    "upstream_latency_ms",
    "overhead_ms",
    "client_ip",
)


@dataclass(frozen=True)
class SeedModel:
    """A model calls are made to: the name asked for, what served it, and its price schedule."""

    requested: str
    served: str
    provider: str = ""
    deployment_id: int | None = None
    # Newest first, as billing.selectors.price_schedule gives them (empty: the list price).
    prices: Sequence[tuple[datetime, PriceNanos]] = ()

    @property
    def embeddings(self) -> bool:
        return "embedding" in self.requested


def default_models(count: int) -> list[SeedModel]:
    """`count` realistic model names: the list-price table first, then numbered open models."""
    names = list(LIST_PRICES)[:count]
    names += [f"open-model-{index}" for index in range(1, count - len(names) + 1)]
    return [SeedModel(requested=name, served=name, provider=provider_of(name)) for name in names]


def provider_of(model: str) -> str:
    return next((name for prefix, name in PROVIDERS.items() if model.startswith(prefix)), "openai-compatible")


def list_price(model: str) -> PriceNanos:
    input_, cached, output = LIST_PRICES.get(model, DEFAULT_PRICE)
    return PriceNanos.from_decimals(
        input_per_mtok=Decimal(input_), cached_input_per_mtok=Decimal(cached), output_per_mtok=Decimal(output)
    )


@dataclass
class SeedResult:
    run: str
    rows: int
    cells: int  # rollup cells upserted (a cell cut by a chunk boundary counts twice)
    seconds: float
    start: datetime
    end: datetime
    chunks: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


# --- time: how many calls each hour gets -------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_US = 3_600_000_000


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def diurnal_weight(local: datetime) -> float:
    """Relative traffic at a local time: a morning and an afternoon peak, quiet nights, weekends
    at 40 %."""
    hour = local.hour + local.minute / 60
    weight = (
        0.12
        + 0.9 * math.exp(-0.5 * ((hour - 10.5) / 2.0) ** 2)
        + 0.8 * math.exp(-0.5 * ((hour - 15.0) / 2.5) ** 2)
    )
    return weight * (0.4 if local.weekday() >= 5 else 1.0)


@dataclass(frozen=True)
class Slot:
    """A stretch of one UTC hour [start_us, end_us) and how many calls it gets."""

    hour: datetime
    start_us: int
    end_us: int
    rows: int


def slots(*, rows: int, start: datetime, end: datetime, zone: ZoneInfo, rng: random.Random) -> list[Slot]:
    """Share `rows` calls out over the UTC hours of [start, end), by the local diurnal curve
    (exactly `rows` in total: cumulative rounding)."""
    start_us, end_us = _micros(start), _micros(end)
    bounds: list[tuple[datetime, int, int, float]] = []
    hour_us = start_us - start_us % _HOUR_US
    while hour_us < end_us:
        low, high = max(hour_us, start_us), min(hour_us + _HOUR_US, end_us)
        middle = _EPOCH + timedelta(microseconds=(low + high) // 2)
        weight = diurnal_weight(middle.astimezone(zone)) * rng.lognormvariate(0, 0.15)
        bounds.append((_EPOCH + timedelta(microseconds=hour_us), low, high, weight * (high - low)))
        hour_us += _HOUR_US
    total = sum(weight for *_, weight in bounds) or 1.0
    result, cumulative, given = [], 0.0, 0
    for index, (hour, low, high, weight) in enumerate(bounds):
        cumulative += weight
        share = rows if index == len(bounds) - 1 else round(rows * cumulative / total)
        result.append(Slot(hour=hour, start_us=low, end_us=high, rows=share - given))
        given = share
    return result


# --- one call -----------------------------------------------------------------------------------------


class _PriceClock:
    """The price of one model at a time; calls come in time order, so it rarely looks again."""

    def __init__(self, model: SeedModel) -> None:
        # Oldest first, in microseconds.
        self.changes = sorted((_micros(moment), price) for moment, price in model.prices)
        self.fallback = list_price(model.served)
        self.valid_from = self.valid_to = 0
        self.price = self.fallback
        self._set(0)

    def _set(self, at_us: int) -> None:
        price, valid_from, valid_to = self.fallback, -(2**62), 2**62
        for moment, candidate in self.changes:
            if moment <= at_us:
                price, valid_from = candidate, moment
            else:
                valid_to = moment
                break
        self.price, self.valid_from, self.valid_to = price, valid_from, valid_to

    def at(self, at_us: int) -> PriceNanos:
        if not self.valid_from <= at_us < self.valid_to:
            self._set(at_us)
        return self.price


# A generated call: the values of COPY_COLUMNS (times as microseconds), and its cell.
Row = tuple[Any, ...]


@dataclass
class _Generator:
    tenant_id: int
    key_ids: Sequence[int]
    models: Sequence[SeedModel]
    run: str
    rng: random.Random
    serial: int = 0
    key_weights: list[float] = field(default_factory=list)
    model_weights: list[float] = field(default_factory=list)
    clocks: list[_PriceClock] = field(default_factory=list)
    ips: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key_weights = _cumulative([1 / (rank + 1) ** 1.2 for rank in range(len(self.key_ids))])
        self.model_weights = _cumulative([1 / (rank + 1) ** 0.9 for rank in range(len(self.models))])
        self.clocks = [_PriceClock(model) for model in self.models]
        self.ips = [
            [f"10.{k % 250}.{k // 250}.{host}" for host in (11, 12, 13, 14)] for k in range(len(self.key_ids))
        ]

    def piece(self, slot: Slot, offsets: Sequence[int]) -> Iterator[Row]:
        """Calls at `slot.start_us + offset` for each (sorted) offset."""
        rng = self.rng
        random_ = rng.random
        gauss = rng.gauss
        count = len(offsets)
        key_ranks = rng.choices(range(len(self.key_ids)), cum_weights=self.key_weights, k=count)
        model_ranks = rng.choices(range(len(self.models)), cum_weights=self.model_weights, k=count)
        tenant_id, run, models, clocks, key_ids, ips = (
            self.tenant_id,
            self.run,
            self.models,
            self.clocks,
            self.key_ids,
            self.ips,
        )
        serial = self.serial
        for offset, key_rank, model_rank in zip(offsets, key_ranks, model_ranks, strict=True):
            serial += 1
            at_us = slot.start_us + offset
            model = models[model_rank]
            end_user = (
                f"user-{int(random_() * END_USERS) + 1:03d}"
                if key_rank < END_USER_KEYS and random_() < END_USER_SHARE
                else ""
            )
            status, error_type = 200, ""
            draw = random_()
            if draw < _ERROR_SHARE:
                for share, status, error_type in ERRORS:  # noqa: B007 - the last one matched is kept
                    draw -= share
                    if draw < 0:
                        break
            streamed = not model.embeddings and random_() < STREAMED_SHARE
            overhead_us = int(400 * math.exp(0.35 * gauss(0, 1))) + 50
            prompt = cached = completion = 0
            estimated = False
            attempts = 1
            ttft_us: int | None = None
            upstream_us: int | None
            if status in (401, 402, 429):  # refused by the gateway itself: no upstream call
                attempts, upstream_us = 0, None
                latency_us = overhead_us + int(600 * math.exp(0.5 * gauss(0, 1)))
            elif status == 400 or status >= 500:
                attempts = 1 if status == 400 else 1 + int(random_() * 3)
                upstream_us = int(attempts * 90_000 * math.exp(0.7 * gauss(0, 1)))
                latency_us = upstream_us + overhead_us
            else:
                prompt = min(int(700 * math.exp(1.1 * gauss(0, 1))) + 8, 200_000)
                if random_() < 0.3:
                    cached = int(prompt * random_() * 0.9)
                if not model.embeddings:
                    completion = min(int(180 * math.exp(0.9 * gauss(0, 1))) + 1, 16_000)
                first_us = int(380_000 * math.exp(0.45 * gauss(0, 1))) if not model.embeddings else 0
                per_token_us = int(12_000 * math.exp(0.3 * gauss(0, 1)))
                if status == 499:  # the client left mid-answer: tokens are the gateway's estimate
                    streamed, estimated = True, True
                    completion = int(completion * random_())
                upstream_us = (
                    first_us + completion * per_token_us
                    if completion
                    else int(60_000 * math.exp(0.4 * gauss(0, 1)))
                )
                latency_us = upstream_us + overhead_us
                if streamed:
                    ttft_us = first_us + overhead_us
                if random_() < 0.015:  # one retry (a 5xx, then another deployment answered)
                    attempts = 2
            price = clocks[model_rank].at(at_us)
            nanos = (
                cost_nanos(
                    price=price, prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion
                )
                if prompt or completion
                else 0
            )
            yield (
                f"seed-{run}-{serial:010d}",
                at_us,
                tenant_id,
                key_ids[key_rank],
                end_user,
                "embeddings" if model.embeddings else "chat.completions",
                model_rank,
                prompt,
                cached,
                completion,
                estimated,
                nanos,
                status,
                error_type,
                streamed,
                attempts,
                latency_us,
                ttft_us,
                upstream_us,
                overhead_us,
                ips[key_rank][serial & 3],
            )
        self.serial = serial


_ERROR_SHARE = sum(share for share, _, _ in ERRORS)


def _cumulative(weights: list[float]) -> list[float]:
    total, result = 0.0, []
    for weight in weights:
        total += weight
        result.append(total)
    return result


def _add_to_cells(cells: dict[CellKey, Cell], hour: datetime, models: Sequence[SeedModel], row: Row) -> None:
    (_, _, tenant_id, key_id, end_user, _, model_rank, prompt, cached, completion, estimated, nanos, status,
     error_type, streamed, _, latency_us, ttft_us, upstream_us, overhead_us, _) = row  # fmt: skip
    model = models[model_rank]
    key = (tenant_id, hour, key_id, end_user, model.requested, model.served)
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = Cell()
    cell.add_facts(
        status=status,
        error_type=error_type,
        prompt_tokens=prompt,
        cached_tokens=cached,
        completion_tokens=completion,
        cache_hit=False,
        estimated=estimated,
        streamed=streamed,
        cost=_dollars(nanos),
        latency_us=latency_us,
        ttft_us=ttft_us,
        upstream_us=upstream_us,
        overhead_us=overhead_us,
    )


_ZERO = Decimal(0)


def _dollars(nanos: int) -> Decimal:
    return nanos_to_dollars(nanos) if nanos else _ZERO


# --- writing ------------------------------------------------------------------------------------------


_OTHER_FIELDS = [
    column
    for column in UsageRecord._meta.concrete_fields
    if not column.primary_key and (column.column or column.attname) not in COPY_COLUMNS
]


def _default_text(column: Field[Any, Any]) -> str:
    value = column.get_default()
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return _copy_text(str(value))


def _millis_text(micros: int | None) -> str:
    return "\\N" if micros is None else f"{micros // 1000}.{micros % 1000:03d}"


def _copy_text(value: str) -> str:
    """A text value as COPY's text format reads it (names come from the database: escape them)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class _CopyFormatter:
    """Rows as lines of COPY's text format (the one hot loop of a seed: kept to f-strings)."""

    def __init__(self, models: Sequence[SeedModel]) -> None:
        # Columns the seed does not set get their model default (COPY knows no Django defaults).
        self.columns = (*COPY_COLUMNS, *(column.column or column.attname for column in _OTHER_FIELDS))
        self.rest = "".join("\t" + _default_text(column) for column in _OTHER_FIELDS) + "\n"
        self.model_text = [
            (
                _copy_text(model.requested),
                _copy_text(model.served),
                _copy_text(model.provider),
                "\\N" if model.deployment_id is None else str(model.deployment_id),
            )
            for model in models
        ]

    def lines(self, slot: Slot, rows: Sequence[Row]) -> str:
        hour_us = _micros(slot.hour)
        prefix = f"{slot.hour:%Y-%m-%d %H}:"
        model_text, rest = self.model_text, self.rest
        out = []
        for (request_id, at_us, tenant_id, key_id, end_user, endpoint, model_rank, prompt, cached, completion,
             estimated, nanos, status, error_type, streamed, attempts, latency_us, ttft_us, upstream_us,
             overhead_us, ip) in rows:  # fmt: skip
            requested, served, provider, deployment = model_text[model_rank]
            within = at_us - hour_us
            seconds, micros = divmod(within, 1_000_000)
            out.append(
                f"{request_id}\t{prefix}{seconds // 60:02d}:{seconds % 60:02d}.{micros:06d}+00\t{tenant_id}\t"
                f"{key_id}\t{end_user}\t{endpoint}\t{requested}\t{served}\t{provider}\t{deployment}\t"
                f"{prompt}\t{cached}\t{completion}\t{'t' if estimated else 'f'}\t"
                f"{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}\t{status}\t{error_type}\t"
                f"{'t' if streamed else 'f'}\tf\t{attempts}\t{latency_us // 1000}.{latency_us % 1000:03d}\t"
                f"{_millis_text(ttft_us)}\t{_millis_text(upstream_us)}\t"
                f"{overhead_us // 1000}.{overhead_us % 1000:03d}\t{ip}{rest}"
            )
        return "".join(out)


def _record(row: Row, models: Sequence[SeedModel]) -> UsageRecord:
    (request_id, at_us, tenant_id, key_id, end_user, endpoint, model_rank, prompt, cached, completion,
     estimated, nanos, status, error_type, streamed, attempts, latency_us, ttft_us, upstream_us,
     overhead_us, ip) = row  # fmt: skip
    model = models[model_rank]

    def millis(micros: int | None) -> Decimal | None:
        return None if micros is None else Decimal(micros).scaleb(-3)

    return UsageRecord(
        request_id=request_id,
        created_at=_EPOCH + timedelta(microseconds=at_us),
        tenant_id=tenant_id,
        api_key_id=key_id,
        end_user=end_user,
        endpoint=endpoint,
        requested_model=model.requested,
        served_model=model.served,
        provider=model.provider,
        deployment_id=model.deployment_id,
        prompt_tokens=prompt,
        cached_tokens=cached,
        completion_tokens=completion,
        usage_estimated=estimated,
        cost=nanos_to_dollars(nanos),
        status=status,
        error_type=error_type,
        streamed=streamed,
        attempts=attempts,
        latency_ms=Decimal(latency_us).scaleb(-3),
        ttft_ms=millis(ttft_us),
        upstream_latency_ms=millis(upstream_us),
        overhead_ms=Decimal(overhead_us).scaleb(-3),
        client_ip=ip,
    )


class _Chunk:
    """One transaction's worth: rows streamed to COPY as they are made, then their rollups."""

    def __init__(self, models: Sequence[SeedModel]) -> None:
        self.models = models
        self.copying = connection.vendor == "postgresql"
        self.formatter = _CopyFormatter(models)
        self.records: list[UsageRecord] = []
        self.cells: dict[CellKey, Cell] = {}
        self.rows = 0
        self._transaction = ExitStack()
        self._copying = ExitStack()
        self._copy: Any = None

    def begin(self) -> _Chunk:
        with ExitStack() as stack:
            stack.enter_context(transaction.atomic())
            self._transaction = stack.pop_all()
        if self.copying:
            try:
                with ExitStack() as stack:
                    cursor = stack.enter_context(connection.cursor())
                    quote = connection.ops.quote_name
                    columns = ", ".join(quote(name) for name in self.formatter.columns)
                    table = quote(UsageRecord._meta.db_table)
                    # psycopg 3's own cursor (Django's wrapper has no copy()); the names are the model's.
                    copy = cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN")
                    self._copy = stack.enter_context(copy)
                    self._copying = stack.pop_all()
            except BaseException as exc:
                self._transaction.__exit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    def add(self, slot: Slot, rows: list[Row]) -> None:
        if self.copying:
            self._copy.write(self.formatter.lines(slot, rows))
        else:
            self.records.extend(_record(row, self.models) for row in rows)
        cells, models, hour = self.cells, self.models, slot.hour
        for row in rows:
            _add_to_cells(cells, hour, models, row)
        self.rows += len(rows)

    def deployment_cells(self) -> dict[DeploymentKey, DeploymentCell]:
        """The provider × deployment hours of the chunk's cells: a seeded model has one provider and
        deployment, so each cell (requested → served model) belongs wholly to one. Seeded calls have
        no attempt log: no upstream attempts are counted, as usage_reconcile derives from the rows."""
        served = {(model.requested, model.served): model for model in self.models}
        deployments: dict[DeploymentKey, DeploymentCell] = {}
        for (_, hour, _, _, requested, served_model), cell in self.cells.items():
            model = served[(requested, served_model)]
            key = (hour, model.provider, model.deployment_id or 0)
            total = deployments.get(key)
            if total is None:
                total = deployments[key] = DeploymentCell()
            total.merge(cell)
        return deployments

    def commit(self) -> None:
        """End the COPY, add the rollups and commit; an error rolls the whole chunk back."""
        with self._transaction:
            with self._copying:
                pass  # the COPY ends here: the rollups need the connection
            if self.copying:
                cells_copy_save(self.cells)
                derived_cells_save(self.cells)
            else:
                UsageRecord.objects.bulk_create(self.records, batch_size=500)
                cells_save(self.cells)
            deployment_cells_save(self.deployment_cells())

    def abort(self, exc: BaseException) -> None:
        """Roll the chunk back (the COPY is abandoned with the error)."""
        with self._transaction:
            self._copying.__exit__(type(exc), exc, exc.__traceback__)
            raise exc


TAB = "\t"


def cells_copy_save(cells: dict[CellKey, Cell]) -> None:
    """`billing.rollups.cells_save` for PostgreSQL at COPY speed: the same upsert (each cell added
    to the stored one, in key order), fed from a temporary table instead of a parameter per value
    (psycopg merges parameters into the statement client-side, a few µs each: 216 a cell)."""
    if not cells:
        return
    quote = connection.ops.quote_name
    table = quote(UsageHourly._meta.db_table)
    keys = ", ".join(quote(name) for name in KEY_COLUMNS)
    columns = ", ".join(quote(name) for name in (*KEY_COLUMNS, *SUM_COLUMNS))
    types = ", ".join(
        f"{quote(name)} {kind}"
        for name, kind in (
            ("tenant_id", "bigint"),
            ("hour", "timestamptz"),
            ("api_key_id", "bigint"),
            ("end_user", "text"),
            ("requested_model", "text"),
            ("served_model", "text"),
            *((name, "bigint") for name in COUNT_COLUMNS),
            ("cost", "numeric"),
            ("saved_cost", "numeric"),
        )
    )
    updates = ", ".join(
        f"{quote(name)} = {table}.{quote(name)} + EXCLUDED.{quote(name)}" for name in SUM_COLUMNS
    )
    with connection.cursor() as cursor:
        # Every name formatted in is the model's own; the values travel by COPY.
        cursor.execute(f"CREATE TEMPORARY TABLE seed_cells ({types}) ON COMMIT DROP")
        with cursor.cursor.copy(f"COPY seed_cells ({columns}) FROM STDIN") as copy:
            for (tenant_id, hour, key_id, end_user, requested, served), cell in cells.items():
                copy.write(
                    f"{tenant_id}\t{hour.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00\t{key_id}\t{_copy_text(end_user)}\t"
                    f"{_copy_text(requested)}\t{_copy_text(served)}\t{TAB.join(map(str, cell.counts))}\t"
                    f"{cell.cost:f}\t{cell.saved_cost:f}\n"
                )
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM seed_cells ORDER BY {keys} "  # noqa: S608
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
        )
        cursor.execute("DROP TABLE seed_cells")


def usage_seed(
    *,
    tenant_id: int,
    zone: ZoneInfo,
    key_ids: Sequence[int],
    models: Sequence[SeedModel],
    rows: int,
    days: int,
    now: datetime | None = None,
    chunk_rows: int = 200_000,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Write `rows` synthetic calls of a tenant over the `days` days before `now`, with their
    rollups, `chunk_rows` rows a transaction. Returns what was written and how fast."""
    if rows < 1 or days < 1 or not key_ids or not models or chunk_rows < 1:
        raise ValueError("usage_seed needs at least one row, day, key and model")
    end = (now or datetime.now(tz=UTC)).astimezone(UTC)
    start = end - timedelta(days=days)
    run = secrets.token_hex(4)
    rng = random.Random(seed)
    generator = _Generator(tenant_id=tenant_id, key_ids=key_ids, models=models, run=run, rng=rng)
    result = SeedResult(run=run, rows=0, cells=0, seconds=0.0, start=start, end=end)
    began = time.perf_counter()
    chunk: _Chunk | None = None

    def commit(done: _Chunk) -> None:
        done.commit()
        result.rows += done.rows
        result.cells += len(done.cells)
        result.chunks += 1
        if progress is not None:
            progress(result.rows)

    try:
        for slot in slots(rows=rows, start=start, end=end, zone=zone, rng=rng):
            if not slot.rows:
                continue
            width = slot.end_us - slot.start_us
            offsets = sorted(int(rng.random() * width) for _ in range(slot.rows))
            for low in range(0, len(offsets), PIECE_ROWS):
                if chunk is None:
                    chunk = _Chunk(models).begin()
                chunk.add(slot, list(generator.piece(slot, offsets[low : low + PIECE_ROWS])))
                if chunk.rows >= chunk_rows:
                    done, chunk = chunk, None
                    commit(done)
        if chunk is not None:
            done, chunk = chunk, None
            commit(done)
    except BaseException as exc:
        if chunk is not None:
            chunk.abort(exc)  # re-raises
        raise
    result.seconds = time.perf_counter() - began
    return result
