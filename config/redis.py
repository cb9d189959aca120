"""Redis clients, one pool per process (sync) and per event loop (async).

Every client has connect and read timeouts (TOLLHOUSE_REDIS_TIMEOUT, a fraction of a second) and
at most one immediate retry, and that only when a pooled connection turns out to be broken: a Redis
that hangs (accepts connections, never answers) then costs a call one timeout, not redis-py's
default of ten retries with backoff. Callers decide what a failure means (the usage sink buffers
in-process and backs off; see billing.usage). Pub/sub reads are not cut short by the read timeout:
redis-py waits indefinitely on a blocking `listen()`.

The usage drain runs in Celery, off the request path, and has its own client (`worker_client`)
with a longer timeout (TOLLHOUSE_REDIS_WORKER_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from config.hot import hot

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_key(*parts: str) -> str:
    return hot.TOLLHOUSE_REDIS_PREFIX + ":".join(parts)


def redis_db() -> int:
    """The database number REDIS_URL selects (0 when it names none)."""
    return _db_of(_url())


@lru_cache(maxsize=8)
def _db_of(url: str) -> int:
    return int(parse_url(url).get("db") or 0)


def _url() -> str:
    if not hot.REDIS_URL:
        raise RuntimeError("REDIS_URL is not configured")
    return str(hot.REDIS_URL)


def client_options(timeout: float) -> dict[str, Any]:
    """Connection options shared by every client (also by the Django cache, see settings.CACHES)."""
    return {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }


@lru_cache(maxsize=1)
def sync_client() -> redis.Redis:
    # One retry, on a connection error only: a pooled connection that Redis closed meanwhile fails
    # at once and the retry gets a fresh one; a timeout is not retried (it would double its cost).
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    return redis.Redis.from_url(_url(), retry=retry, **client_options(hot.TOLLHOUSE_REDIS_TIMEOUT))


_governor_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> aioredis.Redis:
    """The async client of the running loop (an asyncio pool cannot be shared across loops)."""
    return _loop_client(_async_clients, hot.TOLLHOUSE_REDIS_TIMEOUT)


def governor_client() -> aioredis.Redis:
    """The client of admission and settlement (gateway/governor.py). Its timeout is longer than the
    usage sink's: the sink has a fallback for a slow Redis, while a call refused because a busy
    process waited a quarter of a second for its turn would be a false 503."""
    return _loop_client(_governor_clients, hot.TOLLHOUSE_GOVERNOR_REDIS_TIMEOUT)


def _loop_client(
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis], timeout: float
) -> aioredis.Redis:
    url = _url()
    loop = asyncio.get_running_loop()
    client = clients.get(loop)
    if client is None:
        retry = AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        client = aioredis.Redis.from_url(url, retry=retry, **client_options(timeout))
        clients[loop] = client
    return client


def worker_client() -> redis.Redis:
    """A client for a Celery task (the caller closes it): longer timeout, a few retries."""
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.1), 2)
    return redis.Redis.from_url(_url(), retry=retry, **client_options(hot.TOLLHOUSE_REDIS_WORKER_TIMEOUT))


async def close_async_client() -> None:
    from config import resp

    resp.close_loop_client()
    for clients in (_async_clients, _governor_clients):
        client = clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
