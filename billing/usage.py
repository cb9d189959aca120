"""The usage pipeline: the hot path emits one event per call; batches reach the database later.

Two sinks, one interface (`emit`, `start`, `stop`):

- `BufferSink` (embedded mode, and the fallback when Redis is unreachable): events wait in an
  in-process deque and a background task inserts them every TOLLHOUSE_USAGE_FLUSH_SECONDS. The
  deque is bounded (TOLLHOUSE_USAGE_BUFFER_MAX): when full, a call's emit waits for a flush (its
  usage is written through to the database) instead of the buffer growing. While the database is
  unreachable nothing is written, so nothing is dropped either: the buffer holds on and says so once.
- `RedisStreamSink` (Redis configured): one XADD per call to the usage stream. The Celery task
  `billing.tasks.usage_drain` reads it through a consumer group (`usage_drain` below), inserts
  idempotently (unique request id), then acknowledges and deletes. Entries of a crashed worker
  stay pending and are claimed again once idle for TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS; while the
  database is down they wait in Redis. If Redis fails, the event goes to the fallback buffer and
  Redis is left alone for a while (see below).

No value in an event can stop either writer: `billing.services.usage_events_record` stores a row
the database refuses sanitised, or reduced to its money facts, and returns the few events that
cannot be stored at all (no request id, not JSON) with the reason; the drain moves those to the
dead-letter stream (`usage:dead`, fields: the original entry, `id` and `reason`), the buffer logs
them. Only a database outage holds a batch back.

An event is a flat dict of JSON scalars (see `billing.services.usage_row_from_event`); money is
integer nano-dollars (`cost_nanos`) and durations integer microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import orjson
import redis
from asgiref.sync import sync_to_async
from django.db import close_old_connections

from billing.alerts import budget_checks_after_usage
from billing.services import usage_events_record
from config import resp
from config.hot import hot
from config.redis import async_client, redis_key, worker_client
from gateway.metrics import drain_batch_observed

logger = logging.getLogger(__name__)

STREAM = "usage:stream"
DEAD_LETTER = "usage:dead"
GROUP = "usage-writers"
FIELD = b"e"


def stream_key() -> str:
    return redis_key(STREAM)


def dead_letter_key() -> str:
    return redis_key(DEAD_LETTER)


def _request_id_of(event: Any) -> str:
    request_id = event.get("request_id") if isinstance(event, dict) else None
    return repr(request_id)[:80]


def _record_from_loop(batch: list[tuple[float, Any]]) -> int:
    """Runs in the loop's database thread, which has no request cycle to recycle its connection."""
    close_old_connections()
    try:
        events = [event for _, event in batch]
        outcome = usage_events_record(
            events=events, received_at=[datetime.fromtimestamp(at, tz=UTC) for at, _ in batch]
        )
        budget_checks_after_usage(events=events, in_process=True)
    finally:
        close_old_connections()
    for index, reason in outcome.rejected.items():
        # No dead-letter stream in-process: the log keeps the whole event, for a human.
        logger.error("usage event not recorded (%s): %.4000r", reason, batch[index][1])
    return outcome.written


class UsageSink(Protocol):
    async def emit(self, event: dict[str, Any]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class BufferSink:
    def __init__(
        self, *, flush_seconds: float = 1.0, batch_size: int = 1000, max_events: int | None = None
    ) -> None:
        # (time received, event): the time stands in for an event's unreadable created_at_us.
        self.events: deque[tuple[float, dict[str, Any]]] = deque()
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_events = hot.TOLLHOUSE_USAGE_BUFFER_MAX if max_events is None else max_events
        self._task: asyncio.Task[None] | None = None
        self._flushing: asyncio.Lock | None = None
        self._failing_since: float | None = None  # monotonic time of the first failed flush

    async def emit(self, event: dict[str, Any]) -> None:
        if len(self.events) >= self.max_events and self._failing_since is None:
            # Full: this call waits for its share of the database write rather than the buffer
            # growing. While the database is failing, waiting would only slow every call down
            # for nothing; the event is kept (never dropped) and the flusher keeps trying.
            await self.flush()
        self.events.append((time.time(), event))

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
        """Insert everything buffered; if the database fails, the batch goes back to the front.

        The write runs as its own task: a caller that is cancelled (a client gone during a
        write-through, the flusher stopped at shutdown) must not abandon a batch it already took
        off the queue while the database thread is still writing it.
        """
        return await asyncio.shield(self._flush())

    async def _flush(self) -> int:
        if self._flushing is None:
            self._flushing = asyncio.Lock()
        written = 0
        async with self._flushing:
            while self.events:
                batch = [self.events.popleft() for _ in range(min(self.batch_size, len(self.events)))]
                started = time.perf_counter()
                try:
                    written += await sync_to_async(_record_from_loop, thread_sensitive=True)(batch)
                except Exception as exc:
                    # Only an outage gets here (a bad event is dealt with by the writer): keep
                    # everything and try again at the next flush.
                    self.events.extendleft(reversed(batch))
                    self._flush_failed(exc)
                    break
                self._flush_succeeded()
                drain_batch_observed(events=len(batch), seconds=time.perf_counter() - started)
        return written

    def _flush_failed(self, exc: Exception) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            logger.error(
                "usage buffer: the database refused a batch (%s: %s); %d events kept in memory, "
                "retrying every %s s",
                type(exc).__name__,
                str(exc).strip()[:300],
                len(self.events),
                self.flush_seconds,
            )

    def _flush_succeeded(self) -> None:
        if self._failing_since is not None:
            logger.info(
                "usage buffer: the database took the backlog again after %.1f s",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()


class RedisStreamSink:
    """XADD per call; if Redis fails, buffer in-process and leave Redis alone for a while.

    A Redis that hangs costs a call one TOLLHOUSE_REDIS_TIMEOUT. So that it does not cost that to
    every call, the first failure marks Redis down (one warning): calls then go straight to the
    fallback buffer, and one call every `_pause` seconds probes Redis with its own XADD (the pause
    doubles from PROBE_MIN_SECONDS to PROBE_MAX_SECONDS while Redis stays down). The first probe
    that succeeds brings the stream back (one info line). No call's usage is lost either way.
    """

    PROBE_MIN_SECONDS = 0.5
    PROBE_MAX_SECONDS = 5.0

    def __init__(self, *, fallback: BufferSink) -> None:
        self.fallback = fallback
        self.key = stream_key()
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._pause = self.PROBE_MIN_SECONDS

    @property
    def down(self) -> bool:
        return self._down_since is not None

    async def emit(self, event: dict[str, Any]) -> None:
        try:
            payload = orjson.dumps(event)
        except orjson.JSONEncodeError as exc:
            # A lone surrogate or a huge int cannot be JSON; the buffer's writer stores it sanitised.
            logger.warning(
                "usage of request %s is not JSON (%s); recorded in-process", _request_id_of(event), exc
            )
            await self.fallback.emit(event)
            return
        now = time.monotonic()
        if self._down_since is not None:
            if now < self._next_probe:
                await self.fallback.emit(event)
                return
            # This call is the probe; the others keep skipping Redis until it is answered.
            self._next_probe = now + self._pause
        try:
            url = str(hot.REDIS_URL)
            if resp.supports(url):  # the request path's lean client (config/resp.py)
                await resp.loop_client(url, timeout=hot.TOLLHOUSE_REDIS_TIMEOUT).call(
                    "XADD", self.key, "*", FIELD, payload
                )
            else:  # TLS or a unix socket: redis-py
                await async_client().xadd(self.key, {FIELD: payload})
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            await self.fallback.emit(event)
            return
        if self._down_since is not None:
            self._recovered()

    def emit_sent(self, event: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        """`emit`, its XADD queued now and written before a task that yields once resumes
        (config/resp.py `send_soon`); what is returned awaits the reply (and records the event
        in-process if Redis failed). None where that cannot be done: the stream is down, the event
        is not JSON, redis-py's URLs, no connection open yet; then `emit`. A JSON answer that nothing
        governs leaves with its usage event in Redis this way, without waiting for the reply
        (gateway/calls.py `Call.settle_soon`)."""
        url = str(hot.REDIS_URL)
        if self._down_since is not None or not resp.supports(url):
            return None
        try:
            payload = orjson.dumps(event)
        except orjson.JSONEncodeError:
            return None
        lean = resp.loop_client(url, timeout=hot.TOLLHOUSE_REDIS_TIMEOUT)
        sent = lean.send_soon("XADD", self.key, "*", FIELD, payload)
        return None if sent is None else self._added(sent, event)

    async def _added(self, sent: asyncio.Future[Any], event: dict[str, Any]) -> None:
        try:
            await sent
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            await self.fallback.emit(event)

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._pause = self.PROBE_MIN_SECONDS
            logger.warning(
                "usage stream unreachable (%s: %s); recording usage in-process and probing Redis "
                "every %s to %s s",
                type(exc).__name__,
                str(exc)[:200],
                self.PROBE_MIN_SECONDS,
                self.PROBE_MAX_SECONDS,
            )
        else:
            self._pause = min(self._pause * 2, self.PROBE_MAX_SECONDS)
        self._next_probe = now + self._pause

    def _recovered(self) -> None:
        assert self._down_since is not None
        logger.info("usage stream reachable again after %.1f s", time.monotonic() - self._down_since)
        self._down_since = None
        self._pause = self.PROBE_MIN_SECONDS

    async def start(self) -> None:
        # Nothing to connect here: a Redis that is down at start must not stop the gateway.
        await self.fallback.start()

    async def stop(self) -> None:
        await self.fallback.stop()


def make_sink() -> UsageSink:
    buffer = BufferSink(flush_seconds=hot.TOLLHOUSE_USAGE_FLUSH_SECONDS)
    if hot.REDIS_URL:
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


def _entry_time(entry_id: bytes) -> datetime:
    """When Redis received the entry (its id starts with milliseconds since the epoch)."""
    return datetime.fromtimestamp(int(entry_id.split(b"-")[0]) / 1000, tz=UTC)


def _decode(raw: bytes) -> Any:
    """The event in an entry. orjson first (fast); what it refuses but Python's own parser reads
    (a lone surrogate escape, NaN, bytes that are not UTF-8) is still an event whose money facts
    can be stored, sanitised, rather than set aside."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw.decode("utf-8", "replace"))


def _write(client: redis.Redis, entries: Entries) -> int:
    started = time.perf_counter()
    events: list[Any] = []
    received: list[datetime | None] = []
    event_ids: list[bytes] = []
    set_aside: dict[bytes, str] = {}
    for entry_id, fields in entries:
        # An entry deleted while pending is claimed with no fields (Redis < 7): nothing to keep.
        raw = (fields or {}).get(FIELD)
        if raw is None:
            set_aside[entry_id] = f"no {FIELD.decode()!r} field"
            continue
        try:
            events.append(_decode(raw))
        except (ValueError, RecursionError) as exc:
            set_aside[entry_id] = f"not JSON ({exc})"
            continue
        received.append(_entry_time(entry_id))
        event_ids.append(entry_id)
    # A database outage propagates from here, leaving every entry pending, to be claimed again.
    outcome = usage_events_record(events=events, received_at=received)
    for index, reason in outcome.rejected.items():
        set_aside[event_ids[index]] = reason
    # Acknowledge only after the rows are committed: a crash before this leaves the entries pending
    # too; the unique request id makes the second insert a no-op. Setting aside and acknowledging
    # happen in one transaction, so an entry is never both gone and not set aside.
    pipe = client.pipeline(transaction=True)
    for entry_id, fields in entries:
        why = set_aside.get(entry_id)
        if why is None:
            continue
        logger.error("usage stream entry %s moved to the dead-letter stream: %s", entry_id.decode(), why)
        dead: dict[Any, Any] = {
            **(fields or {}),
            b"id": entry_id,
            # The reason may quote the value the database refused: never let it fail the XADD.
            b"reason": why.encode("utf-8", "backslashreplace"),
        }
        pipe.xadd(dead_letter_key(), dead)
    ids = [entry_id for entry_id, _ in entries]
    pipe.xack(stream_key(), GROUP, *ids)
    pipe.xdel(stream_key(), *ids)
    pipe.execute()
    budget_checks_after_usage(events=events)
    drain_batch_observed(events=len(entries), seconds=time.perf_counter() - started)
    return outcome.written


def usage_drain(*, batch_size: int = 1000, claim_idle_ms: int | None = None, max_batches: int = 50) -> int:
    """Move usage events from the Redis stream into the database. Returns rows written.

    First the entries another consumer read but never acknowledged for `claim_idle_ms` (default
    TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS): its worker crashed, or the database was down. Then new
    entries. At most `max_batches` batches of each, so that one run ends and the next one starts.
    A batch of 1000 is one INSERT statement (billing.services.usage_records_insert_new's chunk):
    measured draining 20,000 events, 10 to 25 % faster than batches of 500; larger gained nothing.
    """
    if not hot.REDIS_URL:
        return 0
    if claim_idle_ms is None:
        claim_idle_ms = int(hot.TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS) * 1000
    client = worker_client()
    try:
        _ensure_group(client)
        consumer = _consumer_name()
        written = 0
        # XAUTOCLAIM scans the pending list from a cursor; after an outage it may hold many
        # batches, so go on until the cursor comes back to the start ("0-0").
        # redis-py types its replies loosely; these are (cursor, entries, deleted) and [[stream, entries]].
        start: Any = "0-0"
        for _ in range(max_batches):
            reply: Any = client.xautoclaim(
                stream_key(), GROUP, consumer, claim_idle_ms, start, count=batch_size
            )
            start, claimed = reply[0], cast(Entries, reply[1])
            if claimed:
                written += _write(client, claimed)
            if start in (b"0-0", "0-0"):
                break
        for _ in range(max_batches):
            response: Any = client.xreadgroup(GROUP, consumer, {stream_key(): ">"}, count=batch_size)
            entries: Entries = response[0][1] if response else []
            if not entries:
                break
            written += _write(client, entries)
        if written:
            # Only when there was work: an idle worker stays quiet (it runs every few seconds).
            logger.info("usage drain: %d rows written", written)
        return written
    finally:
        client.close()


# --- what the operator overview shows of the pipeline -------------------------------------------------


@dataclass(frozen=True)
class PipelineState:
    """The usage stream now (as /metrics reads it, config/metrics.py): events not yet in the
    database, how many a drain holds unacknowledged, how many no drain has read, the age of the
    oldest event still waiting and of the oldest pending one, and the dead letters set aside."""

    length: int
    pending: int
    unread: int
    oldest_age_seconds: float | None  # None: the stream is empty
    oldest_pending_age_seconds: float | None  # None: nothing pending
    dead_letters: int


def _age_seconds(entry_id: Any, now_ms: int) -> float:
    millis = int(_text_of(entry_id).split("-")[0])
    return max(now_ms - millis, 0) / 1000


def _text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pipeline_state() -> PipelineState:
    """Read the stream's state in one round trip (blocking: for the console). Needs REDIS_URL; a
    Redis error propagates (the caller says Redis could not be read)."""
    client = worker_client()
    try:
        pipe = client.pipeline(transaction=False)
        pipe.xlen(stream_key())
        pipe.xinfo_groups(stream_key())
        pipe.xrange(stream_key(), count=1)
        pipe.xpending(stream_key(), GROUP)
        pipe.xlen(dead_letter_key())
        pipe.time()
        length, groups, first, pending, dead, now = pipe.execute(raise_on_error=False)
    finally:
        client.close()
    for result in (length, dead, now):
        if isinstance(result, Exception):
            raise result
    # XINFO GROUPS / XPENDING on a stream nobody wrote to yet (or without the group): none pending.
    groups = groups if isinstance(groups, list) else []
    pending = pending if isinstance(pending, dict) else {}
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    waiting = int(pending.get("pending") or 0)
    lag = next((group.get("lag") for group in groups if _text_of(group.get("name")) == GROUP), None)
    return PipelineState(
        length=int(length),
        pending=waiting,
        # Drained entries are deleted: what is left is either pending, or not read yet.
        unread=int(lag) if lag is not None else max(int(length) - waiting, 0),
        oldest_age_seconds=_age_seconds(first[0][0], now_ms) if isinstance(first, list) and first else None,
        oldest_pending_age_seconds=_age_seconds(pending["min"], now_ms)
        if waiting and pending.get("min")
        else None,
        dead_letters=int(dead),
    )
