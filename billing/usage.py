"""The usage pipeline: the hot path emits one event per call; batches reach the database later.

Two sinks, one interface (`emit`, `start`, `stop`):

- `BufferSink` (embedded mode, and the fallback when Redis is unreachable): events wait in an
  in-process deque and a background task inserts them every TOLLHOUSE_USAGE_FLUSH_SECONDS. A
  failed insert puts the batch back; shutdown flushes what is left.
- `RedisStreamSink` (Redis configured): one XADD per call to the usage stream. The Celery task
  `billing.tasks.usage_drain` reads it through a consumer group (`usage_drain` below), inserts
  idempotently (unique request id), then acknowledges and deletes. Entries of a crashed worker
  stay pending and are claimed again; while the database is down they wait in Redis.

An event is a flat dict of JSON scalars (see `billing.services.usage_record_from_event`); money is
integer nano-dollars (`cost_nanos`) and durations integer microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from typing import Any, Protocol, cast

import orjson
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from billing.services import usage_record_from_event, usage_records_save
from config.redis import async_client, redis_key

logger = logging.getLogger(__name__)

STREAM = "usage:stream"
DEAD_LETTER = "usage:dead"
GROUP = "usage-writers"
FIELD = b"e"


def stream_key() -> str:
    return redis_key(STREAM)


def _insert_batch_from_loop(batch: list[dict[str, Any]]) -> int:
    """Runs in the loop's database thread, which has no request cycle to recycle its connection."""
    records = []
    for event in batch:
        try:
            records.append(usage_record_from_event(event))
        except (KeyError, TypeError, ValueError):
            # Never retried forever: the whole event goes to the log, where it can be recovered.
            logger.error("usage event is unreadable and was not recorded: %s", orjson.dumps(event).decode())
    close_old_connections()
    try:
        return usage_records_save(records=records)
    finally:
        close_old_connections()


class UsageSink(Protocol):
    async def emit(self, event: dict[str, Any]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class BufferSink:
    def __init__(self, *, flush_seconds: float = 1.0, batch_size: int = 1000) -> None:
        self.events: deque[dict[str, Any]] = deque()
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self._task: asyncio.Task[None] | None = None

    async def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-buffer-flusher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Insert everything buffered; on failure the batch goes back to the front of the queue."""
        written = 0
        while self.events:
            batch = [self.events.popleft() for _ in range(min(self.batch_size, len(self.events)))]
            try:
                written += await sync_to_async(_insert_batch_from_loop, thread_sensitive=True)(batch)
            except Exception:
                self.events.extendleft(reversed(batch))
                logger.exception("usage buffer: %d events could not be written; will retry", len(batch))
                break
        return written

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()


class RedisStreamSink:
    def __init__(self, *, fallback: BufferSink) -> None:
        self.fallback = fallback
        self.key = stream_key()

    async def emit(self, event: dict[str, Any]) -> None:
        try:
            await async_client().xadd(self.key, {FIELD: orjson.dumps(event)})
        except (redis.RedisError, OSError):
            # Never lose a call's usage because Redis blinked: write it straight to the database.
            logger.warning("usage stream unreachable; buffering request %s in-process", event["request_id"])
            await self.fallback.emit(event)

    async def start(self) -> None:
        await self.fallback.start()

    async def stop(self) -> None:
        await self.fallback.stop()


def make_sink() -> UsageSink:
    buffer = BufferSink(flush_seconds=settings.TOLLHOUSE_USAGE_FLUSH_SECONDS)
    if settings.REDIS_URL:
        return RedisStreamSink(fallback=buffer)
    return buffer


# --- the consumer side (Celery) ---------------------------------------------------------------------


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(stream_key(), GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


Entries = list[tuple[bytes, dict[bytes, bytes]]]


def _write(client: redis.Redis, entries: Entries) -> int:
    records, ids = [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        try:
            records.append(usage_record_from_event(orjson.loads(fields[FIELD])))
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            # One unreadable entry must not hold up every call behind it; keep it for a human.
            logger.error("usage stream entry %s is unreadable; moved to the dead-letter stream", entry_id)
            dead: dict[Any, Any] = {b"id": entry_id, **fields}
            client.xadd(redis_key(DEAD_LETTER), dead)
    # A database error propagates from here, leaving the entries pending, to be claimed again.
    written = usage_records_save(records=records) if records else 0
    # Acknowledge only after the rows are committed: a crash before this line leaves the entries
    # pending too; the unique request id makes the second insert a no-op.
    if ids:
        pipe = client.pipeline(transaction=True)
        pipe.xack(stream_key(), GROUP, *ids)
        pipe.xdel(stream_key(), *ids)
        pipe.execute()
    return written


def usage_drain(*, batch_size: int = 500, claim_idle_ms: int = 60_000, max_batches: int = 50) -> int:
    """Move usage events from the Redis stream into the database. Returns rows written."""
    client = redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None
    if client is None:
        return 0
    try:
        _ensure_group(client)
        consumer = _consumer_name()
        written = 0
        # Entries another consumer read but never acknowledged (it crashed, or the DB was down).
        # redis-py types its replies loosely; these are (cursor, entries, deleted) and [[stream, entries]].
        claimed: Entries = cast(
            Any, client.xautoclaim(stream_key(), GROUP, consumer, claim_idle_ms, "0-0", count=batch_size)
        )[1]
        if claimed:
            written += _write(client, claimed)
        for _ in range(max_batches):
            response: Any = client.xreadgroup(GROUP, consumer, {stream_key(): ">"}, count=batch_size)
            entries: Entries = response[0][1] if response else []
            if not entries:
                break
            written += _write(client, entries)
        return written
    finally:
        client.close()
