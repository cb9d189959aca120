"""config.redis: every client gives up on a Redis that hangs after TOLLHOUSE_REDIS_TIMEOUT."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from config.redis import async_client, close_async_client, sync_client
from tests.support.process import SilentServer


@pytest.fixture
def hung_redis(settings):
    with SilentServer() as hung:
        settings.REDIS_URL = hung.url
        sync_client.cache_clear()
        yield hung
        sync_client.cache_clear()


def test_it_gives_up_on_a_hung_redis_after_one_timeout_sync(hung_redis, settings):
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        sync_client().ping()
    assert time.monotonic() - started < settings.TOLLHOUSE_REDIS_TIMEOUT + 0.5


def test_it_gives_up_on_a_hung_redis_after_one_timeout_async(hung_redis, settings):
    async def ping() -> float:
        started = time.monotonic()
        try:
            with pytest.raises(redis.TimeoutError):
                await async_client().ping()
            return time.monotonic() - started
        finally:
            await close_async_client()

    assert asyncio.run(ping()) < settings.TOLLHOUSE_REDIS_TIMEOUT + 0.5


def test_it_bounds_the_django_cache_the_same_way(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    options = settings.CACHES["default"]["OPTIONS"]
    assert options["socket_timeout"] == options["socket_connect_timeout"] == settings.TOLLHOUSE_REDIS_TIMEOUT
