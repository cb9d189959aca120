"""Retention of the raw usage rows: rows older than TOLLHOUSE_USAGE_RETENTION_DAYS are deleted.

Only `UsageRecord` rows go. The hourly rollups (`UsageHourly`) keep every call's counts, tokens,
cost and latencies for good, and the credit ledger (`CreditEntry`) is the money: neither is touched.

How, so that the gateway's inserts never wait (DESIGN §6, §9):

- By primary-key ranges. One query finds the highest id among the rows to delete; then
  `DELETE … WHERE id >= lo AND id < lo + batch_size AND created_at < cutoff` walks up from the
  lowest id, each batch its own short transaction, with a short pause between them. A batch reads
  at most `batch_size` index entries and never revisits the rows earlier batches deleted (deleting
  "the first n rows older than the cutoff" again and again does, and its last, empty batch scans
  every recent row). The created_at index (btree or BRIN) only makes the bounds query fast; the
  `created_at < cutoff` condition in each DELETE is what decides, so ids out of time order (a call
  drained days late) are still judged by their time. Measured on PostgreSQL 15 with 1.2 million
  rows, purging one day of 300,000: 0.2 to 0.6 s in 60 batches of 5,000, the slowest batch 0.1 s,
  with a btree or a BRIN index on created_at.
- A DELETE locks only the rows it deletes, which no insert wants: inserts go on meanwhile.
- One purge at a time: a PostgreSQL advisory lock. A second purge (two beats, a manual run) that
  finds it held returns 0 at once instead of deleting beside the first.

The floor. `billing.reconcile.counters_reconcile` re-derives each budget's counter from the raw rows
of its period (`billing.pots.derive`), and a pot lives until a few days after its period ended; a
monthly budget therefore needs the rows of the whole open month, and of the previous month for the
first days of a new one. So a purge never deletes a row from the start of the previous calendar
month on, in any time zone (the earliest such start is in UTC+14), whatever
TOLLHOUSE_USAGE_RETENTION_DAYS or `before` says: a retention shorter than about 32 to 62 days keeps
rows until that floor instead. This is a clamp, not an error, so that a misconfiguration can never
make the beat task fail and stop purging altogether.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import UsageRecord

logger = logging.getLogger(__name__)

# pg_try_advisory_lock key of the purge: any fixed 64-bit number no other part of Tollhouse uses.
LOCK_KEY = 0x746F6C6C_75736770  # "tollusgp"
# The zone furthest ahead of UTC (Kiribati): its months start 14 hours before UTC's.
_EARLIEST_OFFSET = timedelta(hours=14)


def retention_floor(now: datetime) -> datetime:
    """The oldest instant a purge at `now` may delete rows before: the start of the previous
    calendar month, in the time zone where months start earliest (UTC+14)."""
    this_month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous_month = (this_month - timedelta(days=1)).replace(day=1)
    return previous_month - _EARLIEST_OFFSET


def retention_cutoff(now: datetime) -> datetime:
    """Rows created before this are past retention (TOLLHOUSE_USAGE_RETENTION_DAYS, floor applied)."""
    days = int(settings.TOLLHOUSE_USAGE_RETENTION_DAYS)
    return min(now - timedelta(days=days), retention_floor(now))


@contextlib.contextmanager
def _purge_lock() -> Iterator[bool]:
    """Yields whether this process may purge (False: another purge holds the lock)."""
    if connection.vendor != "postgresql":
        yield True  # embedded (SQLite): one process, nothing to coordinate with
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        # A session-level lock ends with its session: a connection that broke already let it go.
        if held and connection.is_usable():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def _bounds(table: str, cutoff: Any) -> tuple[int | None, int | None]:
    """(lowest, highest) id of the rows created before the cutoff; None: there is none.

    Both from the rows to delete, read through the created_at index: walking from the table's
    lowest id instead would step through every id of the rows kept whenever an old row has a high
    id (a call drained late, rows seeded out of order), 2,000 empty batches for 10 M rows kept."""
    old = f"SELECT id FROM {table} WHERE created_at < %s"  # noqa: S608 (the model's own table name)
    if connection.vendor == "postgresql":
        # OFFSET 0 keeps PostgreSQL from answering MIN/MAX(id) by walking the primary key from one
        # end, filtering on created_at: that can visit every row kept before finding one to go.
        old += " OFFSET 0"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM ({old}) AS old", [cutoff])  # noqa: S608
        lowest, highest = cursor.fetchone()
    return lowest, highest


def usage_purge(
    *, before: datetime | None = None, batch_size: int = 5000, pause_seconds: float = 0.01
) -> int:
    """Delete the raw usage rows created before `before` (default: now minus
    TOLLHOUSE_USAGE_RETENTION_DAYS; never after `retention_floor`), in batches of at most
    `batch_size` rows, each its own transaction. Returns how many rows were deleted."""
    if before is not None and (not isinstance(before, datetime) or timezone.is_naive(before)):
        raise ValueError("before must be an aware datetime")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError("batch_size must be a whole number of at least 1")
    if (
        isinstance(pause_seconds, bool)
        or not isinstance(pause_seconds, int | float)
        or not 0 <= pause_seconds <= 60
    ):
        raise ValueError("pause_seconds must be a number from 0 to 60")
    now = timezone.now()
    cutoff = min(before, retention_floor(now)) if before is not None else retention_cutoff(now)
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    db_cutoff = UsageRecord._meta.get_field("created_at").get_db_prep_value(cutoff, connection)
    started = time.monotonic()
    deleted = batches = 0
    with _purge_lock() as held:
        if not held:
            logger.info("usage purge: another purge is running; this one skipped")
            return 0
        lowest, highest = _bounds(table, db_cutoff)
        if lowest is None or highest is None:
            return 0
        sql = f"DELETE FROM {table} WHERE id >= %s AND id < %s AND created_at < %s"  # noqa: S608
        low = lowest
        while low <= highest:
            if batches:
                time.sleep(pause_seconds)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [low, low + batch_size, db_cutoff])
                deleted += max(cursor.rowcount, 0)
            batches += 1
            low += batch_size
    if deleted:
        logger.info(
            "usage purge: %d raw rows created before %s deleted in %.2f s (%d batches)",
            deleted,
            cutoff.isoformat(timespec="seconds"),
            time.monotonic() - started,
            batches,
        )
    return deleted
