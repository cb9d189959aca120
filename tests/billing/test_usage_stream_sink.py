"""billing.usage.RedisStreamSink when Redis fails: bounded cost per call, one log line per change."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest
import redis
from django.conf import settings as django_settings

from billing.models import UsageRecord
from billing.usage import BufferSink, RedisStreamSink, stream_key
from config.redis import close_async_client, sync_client
from tests.billing.test_usage_records_save import event
from tests.support.process import RedisServer, SilentServer, free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL"),
]


def stream_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "billing.usage" and r.levelno >= logging.INFO]


async def emit_timed(sink: RedisStreamSink, request_ids: list[str]) -> list[float]:
    took = []
    for request_id in request_ids:
        started = time.monotonic()
        await sink.emit(event(request_id))
        took.append(time.monotonic() - started)
    return took


def test_it_buffers_when_redis_refuses_and_warns_once_not_per_call(settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def scenario() -> None:
        sink = RedisStreamSink(fallback=BufferSink(flush_seconds=3600))
        await sink.start()
        await emit_timed(sink, [f"refused-{i}" for i in range(20)])
        assert sink.down and len(sink.fallback.events) == 20
        await sink.stop()
        await close_async_client()

    with caplog.at_level(logging.INFO, logger="billing.usage"):
        asyncio.run(scenario())
    assert UsageRecord.objects.count() == 20
    [warning] = stream_warnings(caplog)
    assert "usage stream unreachable" in warning


def test_it_costs_a_call_at_most_one_timeout_when_redis_hangs_and_then_skips_it(settings, caplog):
    with SilentServer() as hung:
        settings.REDIS_URL = hung.url

        async def scenario() -> list[float]:
            sink = RedisStreamSink(fallback=BufferSink(flush_seconds=3600))
            await sink.start()
            took = await emit_timed(sink, [f"hung-{i}" for i in range(30)])
            await sink.stop()
            return took

        with caplog.at_level(logging.INFO, logger="billing.usage"):
            took = asyncio.run(scenario())
    timeout = settings.TOLLHOUSE_REDIS_TIMEOUT
    # The first call waits one timeout (plus scheduling slack); the others skip Redis while it is down.
    assert took[0] < timeout + 0.5
    assert sum(took[1:]) < 0.5, took
    assert UsageRecord.objects.count() == 30
    assert len(stream_warnings(caplog)) == 1


def test_it_probes_while_down_and_comes_back_with_one_info_line(settings, caplog):
    redis_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> RedisStreamSink:
        sink = RedisStreamSink(fallback=BufferSink(flush_seconds=3600))
        await sink.start()
        await emit_timed(sink, ["down-1", "down-2"])
        # Redis is back (here: at its real address) but nobody asks it until the pause is over.
        await close_async_client()
        settings.REDIS_URL = redis_url
        await emit_timed(sink, ["skipped"])
        assert sink.down
        await asyncio.sleep(RedisStreamSink.PROBE_MIN_SECONDS + 0.1)
        await emit_timed(sink, ["probe", "after"])
        assert not sink.down
        await sink.stop()
        await close_async_client()
        return sink

    with caplog.at_level(logging.INFO, logger="billing.usage"):
        asyncio.run(scenario())
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"down-1", "down-2", "skipped"}
    assert sync_client().xlen(stream_key()) == 2  # the probe and the call after it
    messages = stream_warnings(caplog)
    assert len(messages) == 2 and "reachable again" in messages[1], messages


def test_it_records_an_event_that_cannot_be_json_in_process(caplog):
    async def scenario() -> None:
        sink = RedisStreamSink(fallback=BufferSink(flush_seconds=3600))
        await sink.start()
        await sink.emit(event("surrogate", end_user="\ud800"))
        await sink.emit(event("bigint", prompt_tokens=2**80))
        await sink.emit(event("fine"))
        assert not sink.down
        await sink.stop()

    asyncio.run(scenario())
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"surrogate", "bigint"}
    assert sync_client().xlen(stream_key()) == 1


def test_an_event_sent_soon_is_in_the_stream_before_its_reply_is_awaited():
    """`emit_sent` (the usage event of a JSON answer nothing governs): the XADD is written by the
    time the caller has yielded once, before it awaits the reply; where it cannot be (no connection open yet, an event that is not JSON) it says so with
    None and the caller emits as usual."""

    async def scenario() -> list[object]:
        sink = RedisStreamSink(fallback=BufferSink(flush_seconds=3600))
        await sink.start()
        try:
            seen: list[object] = [sink.emit_sent(event("before-any-connection"))]
            await sink.emit(event("opens-the-connection"))
            rest = sink.emit_sent(event("sent-now"))
            assert rest is not None
            await asyncio.sleep(0)  # as gateway/asgi.py yields before it sends the answer
            seen.append(sync_client().xlen(stream_key()))  # the reply not awaited yet
            await rest
            seen.append(sink.emit_sent(event("surrogate", end_user="\ud800")))
            seen.append(len(sink.fallback.events))
            return seen
        finally:
            await sink.stop()
            await close_async_client()

    assert asyncio.run(scenario()) == [None, 2, None, 0]
    ids = [orjson.loads(fields[b"e"])["request_id"] for _, fields in sync_client().xrange(stream_key())]
    assert ids == ["opens-the-connection", "sent-now"]


def test_an_event_sent_soon_that_redis_does_not_answer_in_time_is_recorded_in_process(settings, caplog):
    """Its XADD went out but the reply did not come within the timeout (a Redis of this test's own,
    paused): the event is kept in-process, and the stream is marked down with one warning."""
    server = RedisServer().start()
    settings.REDIS_URL = server.url
    settings.TOLLHOUSE_REDIS_TIMEOUT = 0.2

    async def scenario() -> RedisStreamSink:
        sink = RedisStreamSink(fallback=BufferSink(flush_seconds=3600))
        await sink.start()
        try:
            await sink.emit(event("opens-the-connection"))
            redis.Redis.from_url(server.url).execute_command("CLIENT", "PAUSE", 1000, "ALL")
            rest = sink.emit_sent(event("unanswered"))
            assert rest is not None
            await rest
            return sink
        finally:
            await sink.stop()
            await close_async_client()

    try:
        with caplog.at_level(logging.INFO, logger="billing.usage"):
            sink = asyncio.run(scenario())
    finally:
        server.stop()
    assert sink.down
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"unanswered"}
    [warning] = stream_warnings(caplog)
    assert "usage stream unreachable (TimeoutError" in warning
