"""Writes to billing: usage records and their hourly rollups, prices."""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from ipaddress import ip_address
from typing import Any

import orjson
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import CharField, JSONField
from django.utils import timezone

from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import Tenant
from billing import events
from billing.models import CreditEntry, ModelPrice, UsageRecord
from billing.pricing import nanos_to_dollars
from billing.rollups import rollups_add

logger = logging.getLogger(__name__)

# --- usage rows -------------------------------------------------------------------------------------
#
# No value in a usage event may stop the ledger. An event is read field by field: whatever is not
# exactly what the gateway emits is replaced by the nearest value the column can hold and noted,
# and the row is marked (error_type "sanitised[:<original>]", plus a log line with its request id).
# The money facts (request id, tenant, key, tokens, cost, status) are kept whenever they are
# readable at all. Only an event without a usable request id (the idempotency key) is refused.

# What the database (or the driver, adapting a value) refuses because of a row's content, as
# opposed to the database being unreachable (OperationalError, InterfaceError), which is an outage:
# then the batch must wait and be tried again, never be set aside. ArithmeticError covers
# OverflowError and decimal's errors; ValueError covers UnicodeError (a lone surrogate).
USAGE_DATA_ERRORS: tuple[type[Exception], ...] = (
    DataError,
    IntegrityError,
    ValueError,
    TypeError,
    ArithmeticError,
)

SANITISED = "sanitised"
_INT16 = 2**15 - 1  # PositiveSmallIntegerField
_INT32 = 2**31 - 1  # PositiveIntegerField
_INT64 = 2**63 - 1  # BigIntegerField, BigAutoField ids
_MAX_COST_NANOS = 10**20 - 1  # NUMERIC(20, 9) dollars
_MAX_DURATION_US = 10**12 - 1  # NUMERIC(12, 3) milliseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TIMESTAMP_US = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds()) * 1_000_000
# PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnusableUsageEvent(ValueError):
    """The event cannot become a row at all (not an object, or no usable request id)."""


def _max_length(name: str) -> int:
    column = UsageRecord._meta.get_field(name)
    assert isinstance(column, CharField) and column.max_length is not None
    return column.max_length


def _whole_number(value: object) -> int | None:
    """An int as the gateway emits it, or the nearest int to what came instead (None: not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,40}\s*", value):
        return int(value)
    return None


class _EventReader:
    """Reads an event's fields, noting every one that had to be changed to be stored."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.problems: list[str] = []

    def note(self, name: str, what: str) -> None:
        self.problems.append(f"{name} {what}")

    def text(self, name: str, *, default: str = "") -> str:
        value = self.event.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            self.note(name, "not text")
            return default
        cleaned = _UNSTORABLE.sub("", value)
        if cleaned != value:
            self.note(name, "had NUL or lone surrogates")
        limit = _max_length(name)
        if len(cleaned) > limit:
            self.note(name, f"truncated to {limit}")
            cleaned = cleaned[:limit]
        return cleaned or default

    def number(
        self, name: str, *, low: int, high: int, default: int | None, clamp: bool = True
    ) -> int | None:
        value = self.event.get(name)
        if value is None:
            return default
        number = _whole_number(value)
        if number is None:
            self.note(name, "not a number")
            return default
        if type(value) is not int:
            self.note(name, "not an integer")
        if low <= number <= high:
            return number
        self.note(name, "out of range")
        if not clamp:
            return default
        return min(max(number, low), high)

    def count(self, name: str, *, high: int = _INT32) -> int:
        number = self.number(name, low=0, high=high, default=0)
        assert number is not None
        return number

    def row_id(self, name: str) -> int | None:
        # An id out of range names nothing: better no tenant than somebody else's.
        return self.number(name, low=1, high=_INT64, default=None, clamp=False)

    def flag(self, name: str) -> bool:
        value = self.event.get(name)
        if value is None or isinstance(value, bool):
            return bool(value)
        self.note(name, "not true or false")
        return isinstance(value, int | float) and value == 1

    def millis(self, name: str) -> Decimal | None:
        micros = self.number(name, low=0, high=_MAX_DURATION_US, default=None)
        return None if micros is None else Decimal(micros).scaleb(-3)

    def request_id(self) -> str:
        value = self.event.get("request_id")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
            self.note("request_id", "not text")
        if not isinstance(value, str):
            raise UnusableUsageEvent("no usable request_id (missing or not text)")
        cleaned = _UNSTORABLE.sub("", value).strip()
        if not cleaned:
            raise UnusableUsageEvent("no usable request_id (empty)")
        if cleaned != value:
            self.note("request_id", "had NUL, lone surrogates or spaces")
        limit = _max_length("request_id")
        if len(cleaned) > limit:
            # Not truncated: two long ids with one prefix would make the second call vanish as a
            # "duplicate". A digest keeps them apart and is the same on every redelivery.
            self.note("request_id", "too long, stored as its digest")
            cleaned = "sha256:" + hashlib.sha256(cleaned.encode()).hexdigest()[: limit - 7]
        return cleaned

    def created_at(self, received_at: datetime | None) -> datetime:
        micros = self.number("created_at_us", low=0, high=_MAX_TIMESTAMP_US, default=None, clamp=False)
        if micros is None:
            if self.event.get("created_at_us") is None:
                self.note("created_at_us", "missing")
            return received_at or datetime.now(tz=UTC)
        return _EPOCH + timedelta(microseconds=micros)

    def status(self) -> int:
        if self.event.get("status") is None:
            self.note("status", "missing")
            return 0
        # 0 stands for "unknown": a status outside HTTP's range tells nothing true.
        status = self.number("status", low=100, high=599, default=0, clamp=False)
        assert status is not None
        return status

    def client_ip(self) -> str | None:
        value = self.event.get("client_ip")
        if value is None or value == "":
            return None
        try:
            if not isinstance(value, str) or len(value) > 64:
                raise ValueError
            address = ip_address(value)
        except ValueError:
            self.note("client_ip", "not an IP address")
            return None
        if getattr(address, "scope_id", None):
            self.note("client_ip", "had a zone")
            address = ip_address(value.partition("%")[0])
        return str(address)


@dataclass
class UsageRow:
    """A usage row read from an event, and what had to be changed to store it (empty: nothing).

    `charge_credits`: the call ran on prepaid credits (the event's `credits` is exactly true), so
    its cost is also charged to the tenant's credit ledger, in the transaction of the row.
    """

    record: UsageRecord
    problems: list[str]
    charge_credits: bool = False


def usage_row_from_event(event: object, *, received_at: datetime | None = None) -> UsageRow:
    """Build (not save) the usage row of a usage event (billing.events.UsageEvent, as a dict).

    Never raises for a field's value, only `UnusableUsageEvent` for an event with no usable
    request id. `received_at` stands in for a missing or unreadable `created_at_us`.
    """
    if not isinstance(event, dict):
        raise UnusableUsageEvent(f"not a usage event (a JSON object), but {type(event).__name__}")
    read = _EventReader(event)
    request_id = read.request_id()
    values: dict[str, Any] = {"request_id": request_id}
    for name, reader in _READERS.items():
        if name != "request_id":
            reader(read, values, received_at)
    _note_unknown(event)
    error_type = values["error_type"]
    record = UsageRecord(**{name: value for name, value in values.items() if name not in _NOT_COLUMNS})
    if read.problems:
        record.error_type = _sanitised_marker(error_type)
    return UsageRow(record=record, problems=read.problems, charge_credits=record.credits)


# How each field of the usage event becomes part of a row: exactly the fields of
# billing.events.UsageEvent (checked below), each read by name into `values`.
_Reader = Callable[[_EventReader, dict[str, Any], datetime | None], None]


def _text(name: str, *, default: str = "") -> _Reader:
    def read(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
        values[name] = reader.text(name, default=default)

    return read


def _count(name: str, *, high: int = _INT32, column: str | None = None) -> _Reader:
    def read(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
        values[column or name] = reader.count(name, high=high)

    return read


def _row_id(name: str, *, column: str | None = None) -> _Reader:
    def read(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
        values[column or name] = reader.row_id(name)

    return read


def _flag(name: str) -> _Reader:
    def read(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
        values[name] = reader.flag(name)

    return read


def _millis(name: str, *, column: str, zero_if_missing: bool = False) -> _Reader:
    def read(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
        millis = reader.millis(name)
        values[column] = Decimal(0) if millis is None and zero_if_missing else millis

    return read


def _read_cost(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    # A usage row never credits anyone: cost is clamped at 0 and at what NUMERIC(20, 9) holds.
    values["cost"] = nanos_to_dollars(reader.count("cost_nanos", high=_MAX_COST_NANOS))


def _read_saved_cost(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    values["saved_cost"] = nanos_to_dollars(reader.count("saved_cost_nanos", high=_MAX_COST_NANOS))


def _read_created_at(reader: _EventReader, values: dict[str, Any], received_at: datetime | None) -> None:
    values["created_at"] = reader.created_at(received_at)


def _read_status(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    values["status"] = reader.status()


def _read_client_ip(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    values["client_ip"] = reader.client_ip()


def _read_credits(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    credits = reader.event.get("credits")
    if credits is not None and not isinstance(credits, bool):
        reader.note("credits", "not true or false (not charged to credits)")
    values["credits"] = credits is True


def _read_ingress(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    if reader.event.get("ingress") is None:
        # A version 1 event: its endpoint says which OpenAI dialect it was.
        endpoint = reader.event.get("endpoint")
        values["ingress"] = (
            events.INGRESS_OF_ENDPOINT.get(endpoint, "openai_chat")
            if isinstance(endpoint, str)
            else "openai_chat"
        )
        return
    values["ingress"] = reader.text("ingress", default="openai_chat")


def _read_session(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    value = reader.event.get("session")
    if value is None:
        values["session"] = ""
        return
    if not isinstance(value, str):
        reader.note("session", "not text")
        values["session"] = ""
        return
    session = events.session_clean(value)
    if session != value:
        reader.note(
            "session",
            f"had control characters, spaces at its ends or more than {events.SESSION_MAX} characters",
        )
    values["session"] = session


def _read_attempt_log(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    value = reader.event.get("attempt_log")
    values["attempt_log"] = []
    if value is None:
        return
    if not isinstance(value, list | tuple):
        reader.note("attempt_log", "not a list")
        return
    # The first attempts and the last ones: what went wrong first and how it ended.
    half = events.ATTEMPT_LOG_MAX // 2
    kept = list(value) if len(value) <= events.ATTEMPT_LOG_MAX else [*value[:half], *value[-half:]]
    log: list[dict[str, Any]] = []
    for entry in kept:
        if not isinstance(entry, dict):
            reader.note("attempt_log", "had an entry that is not an object")
            continue
        attempt = _EventReader(entry)
        error_type = entry.get("error_type")
        if error_type is not None and not isinstance(error_type, str):
            attempt.note("error_type", "not text")
            error_type = ""
        log.append(
            {
                "deployment_id": attempt.row_id("deployment_id"),
                "status": attempt.number("status", low=0, high=599, default=0, clamp=False),
                "duration_us": attempt.number("duration_us", low=0, high=_MAX_DURATION_US, default=0),
                "error_type": _UNSTORABLE.sub("", error_type or "")[:64],
            }
        )
        if attempt.problems or set(entry) - _ATTEMPT_KEYS:
            reader.note("attempt_log", "had an entry with unreadable or unknown fields")
    values["attempt_log"] = log


_ATTEMPT_KEYS = frozenset(events.Attempt.__annotations__)


def _read_version(reader: _EventReader, values: dict[str, Any], _: datetime | None) -> None:
    version = reader.event.get("v")
    if version is None:
        return  # events from before the definition was versioned read the same as version 1
    if type(version) is not int or version < 1:
        reader.note("v", "not a version number")
    elif version > events.VERSION:
        _warn_once(
            f"version:{version}",
            "usage events of version %s arrive; this writer knows version %s and stores the fields it "
            "knows (upgrade the workers)",
            version,
            events.VERSION,
        )


_READERS: dict[str, _Reader] = {
    "request_id": lambda *_: None,  # read first, by usage_row_from_event: it may refuse the event
    "client_request_id": _text("client_request_id"),
    "created_at_us": _read_created_at,
    "tenant_id": _row_id("tenant_id"),
    "api_key_id": _row_id("api_key_id"),
    "end_user": _text("end_user"),
    "endpoint": _text("endpoint", default="chat.completions"),
    "requested_model": _text("requested_model"),
    "served_model": _text("served_model"),
    "provider": _text("provider"),
    "deployment_id": _row_id("deployment_id"),
    "prompt_tokens": _count("prompt_tokens"),
    "cached_tokens": _count("cached_tokens"),
    "completion_tokens": _count("completion_tokens"),
    "usage_estimated": _flag("usage_estimated"),
    "cost_nanos": _read_cost,
    "status": _read_status,
    "error_type": _text("error_type"),
    "streamed": _flag("streamed"),
    "cache_hit": _flag("cache_hit"),
    "attempts": _count("attempts", high=_INT16),
    "latency_us": _millis("latency_us", column="latency_ms", zero_if_missing=True),
    "ttft_us": _millis("ttft_us", column="ttft_ms"),
    "upstream_latency_us": _millis("upstream_latency_us", column="upstream_latency_ms"),
    "overhead_us": _millis("overhead_us", column="overhead_ms", zero_if_missing=True),
    "client_ip": _read_client_ip,
    "credits": _read_credits,
    "refused_by_budget": _row_id("refused_by_budget"),
    "ingress": _read_ingress,
    "upstream_format": _text("upstream_format"),
    "session": _read_session,
    "attempt_log": _read_attempt_log,
    "cache_write_tokens": _count("cache_write_tokens"),
    "reasoning_tokens": _count("reasoning_tokens"),
    "route_strategy": _text("route_strategy"),
    "saved_cost_nanos": _read_saved_cost,
    "v": _read_version,
}
_NOT_COLUMNS = frozenset({"v"})  # read from the event, but not stored as a column of the row
# The writer reads exactly the fields the gateway writes: a field added to the event without a
# reader here (or the other way round) fails at import, not silently in the ledger.
if set(_READERS) != set(events.FIELD_NAMES):  # pragma: no cover - a programming error
    raise ImportError(
        "billing.services reads the usage event fields "
        f"{sorted(set(_READERS) ^ set(events.FIELD_NAMES))} that billing.events does not define, or "
        "the other way round"
    )
_warned: set[str] = set()


def _warn_once(what: str, message: str, *args: object) -> None:
    if what not in _warned and len(_warned) < 1000:
        _warned.add(what)
        logger.warning(message, *args)


def _note_unknown(event: dict[Any, Any]) -> None:
    if len(event) <= len(_READERS) and all(name in _READERS for name in event):
        return
    unknown = sorted(str(name)[:64] for name in event if name not in _READERS)
    for name in unknown[:20]:
        _warn_once(
            f"field:{name}",
            "usage events carry a field %r this writer does not know: not stored (upgrade the workers)",
            name,
        )


def usage_record_from_event(event: object, *, received_at: datetime | None = None) -> UsageRecord:
    """The usage row of an event (see `usage_row_from_event`)."""
    return usage_row_from_event(event, received_at=received_at).record


def _sanitised_marker(error_type: str) -> str:
    return (f"{SANITISED}:{error_type}" if error_type else SANITISED)[: _max_length("error_type")]


def _money_facts_only(record: UsageRecord) -> UsageRecord:
    """The last resort for a row the database refused even sanitised: who, what it cost, the status."""
    return UsageRecord(
        request_id=record.request_id,
        created_at=record.created_at,
        tenant_id=record.tenant_id,
        api_key_id=record.api_key_id,
        prompt_tokens=record.prompt_tokens,
        cached_tokens=record.cached_tokens,
        completion_tokens=record.completion_tokens,
        usage_estimated=record.usage_estimated,
        cost=record.cost,
        status=record.status,
        error_type=SANITISED,
        credits=record.credits,
    )


def _describe(exc: BaseException) -> str:
    first_line = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:300]


_INSERT_FIELDS = [column for column in UsageRecord._meta.concrete_fields if not column.primary_key]


def _insert_sql(rows: int) -> str:
    """PostgreSQL: the whole chunk as one array a column (`unnest`), so the statement has as many
    parameters as the table has columns, however many rows; elsewhere a VALUES list."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(column.column or column.attname) for column in _INSERT_FIELDS)
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{column.db_type(connection)}[]" for column in _INSERT_FIELDS)
        source = f"SELECT * FROM unnest({arrays})"  # noqa: S608
    else:
        row = "(" + ", ".join(["%s"] * len(_INSERT_FIELDS)) + ")"
        source = "VALUES " + ", ".join([row] * rows)
    # Only names and types from the model's own metadata are formatted in; every value is a parameter.
    insert = f"INSERT INTO {quote(UsageRecord._meta.db_table)} ({names}) "
    return (
        insert + source + f" ON CONFLICT ({quote('request_id')}) DO NOTHING RETURNING {quote('request_id')}"
    )


def _insert_params(chunk: Sequence[UsageRecord]) -> list[Any]:
    if connection.vendor == "postgresql":
        # The driver adapts the Python values (str, int, Decimal, aware datetime, bool, None);
        # the casts in the statement make each array the column's type. A JSON column's values go
        # as their JSON text (text[] cast to jsonb[]): a list of lists would read as a 2-D array.
        return [
            [orjson.dumps(getattr(record, column.attname)).decode() for record in chunk]
            if isinstance(column, JSONField)
            else [getattr(record, column.attname) for record in chunk]
            for column in _INSERT_FIELDS
        ]
    return [
        column.get_db_prep_save(getattr(record, column.attname), connection)
        for record in chunk
        for column in _INSERT_FIELDS
    ]


def usage_records_insert_new(records: Sequence[UsageRecord]) -> list[UsageRecord]:
    """Insert usage rows idempotently and return those that were new (the rest were recorded by an
    earlier delivery: same request id). One `INSERT … ON CONFLICT DO NOTHING RETURNING` a chunk;
    run it inside the transaction that must see exactly the new rows (the rollups')."""
    unique: dict[str, UsageRecord] = {}
    for record in records:
        unique.setdefault(record.request_id, record)  # a batch may carry one event twice
    # In request id order: two writers given overlapping batches (a redelivery while the first
    # consumer still works) then wait for each other's rows in one order, never in a cycle.
    batch = sorted(unique.values(), key=lambda record: record.request_id)
    if connection.vendor == "postgresql":
        per_statement = 5000
    else:
        per_statement = max(
            1, min(1000, (connection.features.max_query_params or 999) // len(_INSERT_FIELDS))
        )
    new: list[UsageRecord] = []
    with connection.cursor() as cursor:
        for start in range(0, len(batch), per_statement):
            chunk = batch[start : start + per_statement]
            cursor.execute(_insert_sql(len(chunk)), _insert_params(chunk))
            inserted = {request_id for (request_id,) in cursor.fetchall()}
            new.extend(record for record in chunk if record.request_id in inserted)
    return new


@transaction.atomic
def usage_records_save(*, records: list[UsageRecord]) -> int:
    """Insert usage rows idempotently and add the new ones to the hourly rollups, in one
    transaction: a call already recorded (same request id) changes neither table.

    Returns how many rows were new. Safe to call again with the same batch after a crash.
    """
    if not records:
        return 0
    new = usage_records_insert_new(records)
    rollups_add(new)
    return len(new)


def _credit_charges(records: Sequence[UsageRecord]) -> list[CreditEntry]:
    """The credit-ledger lines charging these calls' costs (records of calls that ran on credits).

    A charge names a tenant by a real foreign key: one for a tenant that does not exist (deleted
    since the call) would make the database refuse the whole batch at commit, so it is left out,
    loudly, and the call's usage row is stored all the same.
    """
    wanted = sorted((record for record in records if record.cost > 0), key=lambda record: record.request_id)
    tenant_ids = {record.tenant_id for record in wanted if record.tenant_id is not None}
    known = (
        set(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", flat=True)) if tenant_ids else set()
    )
    charges: list[CreditEntry] = []
    for record in wanted:
        if record.tenant_id is None or record.tenant_id not in known:
            logger.error(
                "usage charge of request %s (%s USD) not recorded: tenant %s does not exist",
                record.request_id,
                f"{record.cost:f}",
                "(none named)" if record.tenant_id is None else record.tenant_id,
            )
            continue
        charges.append(
            CreditEntry(
                tenant_id=record.tenant_id,
                kind=CreditEntry.Kind.USAGE,
                amount=-record.cost,
                request_id=record.request_id,
            )
        )
    return charges


@transaction.atomic
def _usage_rows_save(records: list[UsageRecord], *, charged: Sequence[UsageRecord] = ()) -> int:
    """Usage rows and the credit charges of those in `charged`, in one transaction, idempotently:
    a request id already charged is skipped, as its row is (the unique `request_id` of both)."""
    written = usage_records_save(records=records)
    charges = _credit_charges(charged)
    if charges:
        CreditEntry.objects.bulk_create(charges, ignore_conflicts=True, batch_size=500)
    return written


@dataclass
class UsageBatchOutcome:
    written: int = 0  # rows that were new
    sanitised: list[str] = field(default_factory=list)  # request ids of rows stored with fixes
    rejected: dict[int, str] = field(default_factory=dict)  # event index -> why it was not stored


def _save_alone(row: UsageRow) -> tuple[int, str | None]:
    """Save one row (and its credit charge) in its own transaction; returns (rows written, reason
    it was refused)."""
    try:
        return _usage_rows_save([row.record], charged=[row.record] if row.charge_credits else []), None
    except USAGE_DATA_ERRORS as exc:
        refused = _describe(exc)
    facts = _money_facts_only(row.record)
    try:
        written = _usage_rows_save([facts], charged=[facts] if row.charge_credits else [])
    except USAGE_DATA_ERRORS as exc:
        reason = f"refused by the database: {refused}; money facts only: {_describe(exc)}"
        return 0, reason + _charge_alone(row)
    row.problems.append(f"row refused ({refused}), only its money facts kept")
    return written, None


def _charge_alone(row: UsageRow) -> str:
    """A row the database refused outright still owes its credit charge: the gateway's counters
    already took it, and re-deriving them from the ledger must not give it back. Returns what
    became of it, for the reason the event is set aside with."""
    if not row.charge_credits:
        return ""
    try:
        with transaction.atomic():
            charges = _credit_charges([row.record])
            CreditEntry.objects.bulk_create(charges, ignore_conflicts=True)
    except USAGE_DATA_ERRORS as exc:
        return f"; its credit charge was refused too: {_describe(exc)}"
    return "; its credit charge was recorded" if charges else ""


def usage_events_record(
    *, events: Sequence[object], received_at: Sequence[datetime | None] | None = None
) -> UsageBatchOutcome:
    """Store the usage rows of a batch of events, whatever the events contain.

    Calls that ran on prepaid credits (event `credits` true) with a cost are charged to the
    tenant's credit ledger in the same transaction as their rows, keyed by request id, so a call is
    charged exactly once however often its event is delivered, and also when its row had to be
    sanitised or reduced to its money facts.

    One idempotent bulk insert first. If the database refuses it for a data reason, each row is
    tried on its own, then as its money facts only; an event that still cannot be stored (or has
    no request id) is returned in `rejected` with the reason, for the caller to set aside, and
    holds up no other row. A database that cannot be reached raises (OperationalError,
    InterfaceError): the caller keeps the whole batch and tries it again later.
    """
    outcome = UsageBatchOutcome()
    rows: list[tuple[int, UsageRow]] = []
    for index, event in enumerate(events):
        try:
            rows.append(
                (index, usage_row_from_event(event, received_at=received_at[index] if received_at else None))
            )
        except UnusableUsageEvent as exc:
            outcome.rejected[index] = str(exc)
    try:
        outcome.written = (
            _usage_rows_save(
                [row.record for _, row in rows], charged=[row.record for _, row in rows if row.charge_credits]
            )
            if rows
            else 0
        )
    except USAGE_DATA_ERRORS as exc:
        logger.warning(
            "usage batch of %d refused (%s); storing its rows one by one", len(rows), _describe(exc)
        )
        for index, row in rows:
            written, reason = _save_alone(row)
            outcome.written += written
            if reason is not None:
                outcome.rejected[index] = reason
    for index, row in rows:
        if row.problems and index not in outcome.rejected:
            outcome.sanitised.append(row.record.request_id)
            logger.warning(
                "usage of request %s stored sanitised: %s", row.record.request_id, "; ".join(row.problems)
            )
    return outcome


def usage_records_insert(*, events: Iterable[object]) -> int:
    """Insert the usage rows of a batch of usage events; returns how many rows were new.

    For callers with nowhere to set an unusable event aside: it is logged with its reason.
    """
    batch = list(events)
    outcome = usage_events_record(events=batch)
    for index, reason in outcome.rejected.items():
        logger.error("usage event not recorded (%s): %.2000r", reason, batch[index])
    return outcome.written


# Far above any real price per million tokens: a typo of a few extra digits is refused, not stored.
MAX_PRICE = Decimal(1_000_000)
PRICE_FIELDS = (
    "input_per_mtok",
    "cached_input_per_mtok",
    "output_per_mtok",
    "cache_write_per_mtok",
    "cache_write_1h_per_mtok",
)
PRICE_AUDIT_FIELDS = ("model", "effective_from", *PRICE_FIELDS)


@transaction.atomic
def model_price_set(
    *,
    model: str,
    input_per_mtok: Decimal,
    cached_input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    effective_from: datetime,
    cache_write_per_mtok: Decimal | None = None,
    cache_write_1h_per_mtok: Decimal | None = None,
    actor: Actor | None = None,
) -> ModelPrice:
    """Record the price of a model from a date, past dates included; an existing price for that
    exact date is replaced. A cache-write price of None: cache writes cost what input costs (the
    1-hour one: the cache-write price).

    This loads a price history (the demo's and the catalog's list prices, `model_price_set
    --backdate`); a price change made by an operator goes through `model_price_schedule`, which
    never changes what is in force."""
    price = ModelPrice.objects.select_for_update().filter(model=model, effective_from=effective_from).first()
    price = price or ModelPrice(model=model, effective_from=effective_from)
    price.input_per_mtok = input_per_mtok
    price.cached_input_per_mtok = cached_input_per_mtok
    price.output_per_mtok = output_per_mtok
    price.cache_write_per_mtok = cache_write_per_mtok
    price.cache_write_1h_per_mtok = cache_write_1h_per_mtok
    return model_price_save(price=price, actor=actor)


def _not_in_force(price: ModelPrice, now: datetime, action: str) -> None:
    if price.pk is not None and price.effective_from <= now:
        raise ValidationError(
            f"This price has been in force since {price.effective_from:%Y-%m-%d %H:%M} UTC and cannot be "
            f"{action}: schedule a new price from a future date instead.",
            code="price_in_force",
        )


@transaction.atomic
def model_price_schedule(
    *,
    model: str,
    input_per_mtok: Decimal,
    cached_input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    effective_from: datetime | None = None,
    cache_write_per_mtok: Decimal | None = None,
    cache_write_1h_per_mtok: Decimal | None = None,
    price: ModelPrice | None = None,
    actor: Actor | None = None,
) -> ModelPrice:
    """An operator's price change, never retroactive: in force from `effective_from`, which must be
    now or later by the server's clock (None: from now). `price` (a scheduled price that is not yet in
    force) is edited instead of adding one; a price in force is never changed. A new price at the
    moment of a scheduled one replaces it."""
    now = timezone.now()
    moment = now if effective_from is None else effective_from
    if moment < now:
        raise ValidationError(
            {
                "effective_from": ValidationError(
                    "Must be now or later: a price change is never retroactive "
                    f"(server time {now:%Y-%m-%d %H:%M} UTC).",
                    code="retroactive",
                )
            }
        )
    if price is None:
        price = ModelPrice.objects.select_for_update().filter(model=model, effective_from=moment).first()
        price = price or ModelPrice(model=model, effective_from=moment)
    else:
        price = ModelPrice.objects.select_for_update().get(pk=price.pk)
        _not_in_force(price, now, "changed")
        clash = ModelPrice.objects.filter(model=model, effective_from=moment).exclude(pk=price.pk).exists()
        if clash:
            raise ValidationError(
                {
                    "effective_from": ValidationError(
                        "Another price of this model starts at that moment.", code="taken"
                    )
                }
            )
        price.model, price.effective_from = model, moment
    price.input_per_mtok = input_per_mtok
    price.cached_input_per_mtok = cached_input_per_mtok
    price.output_per_mtok = output_per_mtok
    price.cache_write_per_mtok = cache_write_per_mtok
    price.cache_write_1h_per_mtok = cache_write_1h_per_mtok
    return model_price_save(price=price, actor=actor)


@transaction.atomic
def model_price_delete(*, price: ModelPrice, actor: Actor | None = None) -> None:
    """Withdraw a scheduled price before it takes effect; a price in force is never deleted."""
    locked = ModelPrice.objects.select_for_update().filter(pk=price.pk).first()
    if locked is None:
        return
    _not_in_force(locked, timezone.now(), "deleted")
    before = audit_snapshot(locked, PRICE_AUDIT_FIELDS)
    audit_record(tenant=None, actor=actor, action="price.delete", target=locked, before=before, after=None)
    locked.delete()


@transaction.atomic
def model_price_save(*, price: ModelPrice, actor: Actor | None = None) -> ModelPrice:
    """Save a price as it is on the instance: each price zero or more (at most MAX_PRICE), at most 9
    decimal places. Audited."""
    errors = {}
    for name in PRICE_FIELDS:
        value = getattr(price, name)
        if not isinstance(value, Decimal | int) or not Decimal(value).is_finite():
            continue  # full_clean() names what is wrong with it
        if value < 0:
            errors[name] = "Must be zero or more."
        elif value > MAX_PRICE:
            errors[name] = f"Must be at most {MAX_PRICE} USD per million tokens."
    if errors:  # clearer than the check constraint's own message, which full_clean() would give
        raise ValidationError(errors)
    stored = ModelPrice.objects.filter(pk=price.pk).first() if price.pk else None
    price.full_clean()
    price.save()
    before, after = audit_snapshot(stored, PRICE_AUDIT_FIELDS), audit_snapshot(price, PRICE_AUDIT_FIELDS)
    if before != after:
        action = "price.create" if stored is None else "price.update"
        audit_record(tenant=None, actor=actor, action=action, target=price, before=before, after=after)
    return price
