"""The usage pipeline over real Redis and the real database: stream, consumer group, buffer."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from django.conf import settings
from django.db import OperationalError

from billing.models import UsageRecord
from billing.usage import FIELD, GROUP, BufferSink, RedisStreamSink, stream_key, usage_drain
from config.redis import redis_key, sync_client
from tests.billing.test_usage_records_save import event
from tests.support.process import database_down

pytestmark = pytest.mark.django_db(transaction=True)
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


async def _emit_all(sink, events):
    await sink.start()
    for item in events:
        await sink.emit(item)
    await sink.stop()


@needs_redis
def test_it_moves_stream_events_into_rows_and_empties_the_stream():
    asyncio.run(_emit_all(RedisStreamSink(fallback=BufferSink()), [event(f"r{i}") for i in range(25)]))
    assert sync_client().xlen(stream_key()) == 25
    assert usage_drain(batch_size=10) == 25
    assert UsageRecord.objects.count() == 25
    assert sync_client().xlen(stream_key()) == 0
    assert usage_drain() == 0


@needs_redis
def test_it_claims_again_what_a_crashed_worker_read_but_never_acknowledged():
    client = sync_client()
    usage_drain()  # creates the consumer group
    for i in range(3):
        client.xadd(stream_key(), {FIELD: orjson.dumps(event(f"c{i}"))})
    # A worker reads the entries, then dies before writing or acknowledging them.
    read = client.xreadgroup(GROUP, "crashed-worker", {stream_key(): ">"}, count=10)
    assert len(read[0][1]) == 3
    assert usage_drain(claim_idle_ms=60_000) == 0  # not idle long enough: still the other worker's
    assert usage_drain(claim_idle_ms=0) == 3
    assert UsageRecord.objects.count() == 3
    assert client.xpending(stream_key(), GROUP)["pending"] == 0


@needs_redis
def test_it_does_not_count_twice_an_event_written_before_a_crash():
    client = sync_client()
    usage_drain()
    client.xadd(stream_key(), {FIELD: orjson.dumps(event("twice"))})
    client.xreadgroup(GROUP, "crashed-after-insert", {stream_key(): ">"}, count=10)
    # The crashed worker had inserted the row but not acknowledged the entry.
    from billing.services import usage_records_insert

    usage_records_insert(events=[event("twice")])
    assert usage_drain(claim_idle_ms=0) == 0
    assert UsageRecord.objects.filter(request_id="twice").count() == 1
    assert client.xpending(stream_key(), GROUP)["pending"] == 0


@needs_redis
def test_it_sets_an_unreadable_entry_aside_with_its_reason_and_records_the_rest():
    client = sync_client()
    client.xadd(stream_key(), {FIELD: b"{not json"})
    client.xadd(stream_key(), {FIELD: orjson.dumps({"status": 200, "cost_nanos": 5})})  # no request id
    client.xadd(stream_key(), {b"other": b"field"})
    client.xadd(stream_key(), {FIELD: orjson.dumps({"request_id": "no-status"})})
    client.xadd(stream_key(), {FIELD: orjson.dumps(event("good"))})
    assert usage_drain() == 2
    rows = {row.request_id: row for row in UsageRecord.objects.all()}
    assert set(rows) == {"good", "no-status"}
    # An event with a request id but nothing else still lands, marked, with status 0 (unknown).
    assert (rows["no-status"].status, rows["no-status"].error_type) == (0, "sanitised")
    assert rows["good"].error_type == ""
    dead = client.xrange(redis_key("usage:dead"))
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(reasons) == 3
    assert reasons[0].startswith("not JSON") and dead[0][1][FIELD] == b"{not json"
    assert "request_id" in reasons[1]
    assert "field" in reasons[2]
    assert client.xlen(stream_key()) == 0
    assert client.xpending(stream_key(), GROUP)["pending"] == 0


@needs_redis
def test_it_leaves_a_batch_pending_while_the_database_is_down_and_sets_nothing_aside():
    client = sync_client()
    for i in range(3):
        client.xadd(stream_key(), {FIELD: orjson.dumps(event(f"o{i}", end_user="\x00" if i == 1 else ""))})
    with database_down(), pytest.raises(OperationalError):
        usage_drain()
    assert client.xpending(stream_key(), GROUP)["pending"] == 3
    assert client.xlen(redis_key("usage:dead")) == 0
    assert usage_drain(claim_idle_ms=0) == 3
    assert client.xpending(stream_key(), GROUP)["pending"] == 0 and client.xlen(stream_key()) == 0


def test_it_falls_back_to_the_in_process_buffer_when_redis_is_down(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    asyncio.run(_emit_all(RedisStreamSink(fallback=BufferSink()), [event("kept-1"), event("kept-2")]))
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"kept-1", "kept-2"}


def test_it_flushes_the_buffer_in_the_background_and_at_shutdown():
    async def scenario():
        sink = BufferSink(flush_seconds=0.05)
        await sink.start()
        await sink.emit(event("early"))
        await asyncio.sleep(0.5)
        flushed_in_background = await asyncio.to_thread(UsageRecord.objects.filter(request_id="early").exists)
        await sink.emit(event("late"))
        sink.flush_seconds = 3600
        await sink.stop()
        return flushed_in_background

    assert asyncio.run(scenario())
    assert UsageRecord.objects.count() == 2
