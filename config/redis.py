"""Redis clients, one pool per process (sync) and per event loop (async)."""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_key(*parts: str) -> str:
    return settings.TOLLHOUSE_REDIS_PREFIX + ":".join(parts)


@lru_cache(maxsize=1)
def sync_client() -> redis.Redis:
    if not settings.REDIS_URL:
        raise RuntimeError("REDIS_URL is not configured")
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)


def async_client() -> aioredis.Redis:
    """The async client of the running loop (an asyncio pool cannot be shared across loops)."""
    if not settings.REDIS_URL:
        raise RuntimeError("REDIS_URL is not configured")
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
        _async_clients[loop] = client
    return client


async def close_async_client() -> None:
    client = _async_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
