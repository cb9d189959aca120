"""Config changes reach every gateway worker at once: a message over Redis pub/sub.

Every committed write to a key, tenant, plan, provider, route, deployment or price publishes what
changed (config/changes.py, whichever way it was written); every worker's runtime listens here and
drops the cached copy, so a revoked key stops working everywhere within milliseconds instead of at
the end of TOLLHOUSE_CACHE_TTL. Without Redis (embedded mode, one process) the message is delivered
in-process. The TTL stays as the safety net for messages missed while Redis was away.

A worker never waits for Redis to start: if the channel is not up within `startup_wait`, it says
so once and keeps trying in the background, logging only when the channel is lost or restored.
"""

from __future__ import annotations

import asyncio
import logging
import random

import orjson
import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from config import changes

logger = logging.getLogger(__name__)

Listener = changes.Listener


def connect_signals() -> None:
    """Called from GatewayConfig.ready(): every save()/delete() of a cached model is broadcast."""
    changes.connect_signals()


class Subscriber:
    """Runs in each gateway worker: applies every config-change message to the local caches."""

    # Seconds. Class attributes so a test can shorten them.
    startup_wait = 1.0  # how long start() waits for the channel before going on without it
    connect_timeout = 3.0  # to connect and have the subscription confirmed
    keepalive = 10.0  # a quiet channel is PINGed after this long...
    pong_timeout = 3.0  # ...and counted lost if Redis says nothing for this long after
    retry_min, retry_max = 0.5, 10.0

    def __init__(self, apply: Listener) -> None:
        self.apply = apply
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._up = asyncio.Event()
        self._ever_up = False
        self._degraded = False  # the "unreachable" / "lost" line was logged; "restored" is next
        self._channel = ""

    async def start(self) -> None:
        if not settings.REDIS_URL:
            changes.add_local_listener(self.apply)
            return
        self._channel = changes.channel()  # of the database the client below selects
        # Its own client, without redis-py's silent reconnects: a reconnection must be seen here,
        # because whatever was published meanwhile was missed and the caches must be dropped.
        self._client = aioredis.Redis.from_url(
            str(settings.REDIS_URL),
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.connect_timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self._up = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._client), name="config-invalidation")
        try:
            await asyncio.wait_for(self._up.wait(), timeout=self.startup_wait)
        except TimeoutError:
            self._went_down()

    async def stop(self) -> None:
        changes.remove_local_listener(self.apply)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the background loop ------------------------------------------------------------------------
    async def _run(self, client: aioredis.Redis) -> None:
        failures = 0
        while True:
            pubsub = client.pubsub()
            try:
                await asyncio.wait_for(self._subscribe(pubsub), timeout=self.connect_timeout)
                failures = 0
                self._came_up()
                # Whatever changed while we were not listening: start from a clean slate.
                self.apply(changes.EVERYTHING)
                await self._receive(pubsub)
            except (redis.RedisError, OSError, TimeoutError):
                self._went_down()
            except Exception:
                # A bug, not an outage: say so loudly, and keep the channel alive.
                logger.exception("config-change listener failed; resubscribing")
            finally:
                self._up.clear()
                await self._close(pubsub)
            failures += 1
            delay = min(self.retry_max, self.retry_min * 2 ** (failures - 1))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def _subscribe(self, pubsub: aioredis.client.PubSub) -> None:
        await pubsub.subscribe(self._channel)
        # SUBSCRIBE only sends; a Redis that accepts connections and never answers is caught here.
        while True:
            message = await pubsub.get_message(timeout=self.connect_timeout)
            if message is not None and message["type"] == "subscribe":
                return

    async def _receive(self, pubsub: aioredis.client.PubSub) -> None:
        """Apply messages until the channel is lost (raises). A quiet channel is checked with a
        PING, since a Redis that hangs would otherwise look just like one with nothing to say."""
        loop = asyncio.get_running_loop()
        last_heard, pinged = loop.time(), False
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is not None:
                last_heard, pinged = now, False
                if message["type"] == "message":
                    self._apply(message["data"])
            elif pinged and now - last_heard > self.keepalive + self.pong_timeout:
                raise redis.ConnectionError("Redis did not answer a PING on the config-change channel")
            elif not pinged and now - last_heard > self.keepalive:
                await pubsub.ping()
                pinged = True

    def _apply(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("ignored an unreadable config-change message")
            return
        if not isinstance(message, dict):
            logger.warning("ignored an unreadable config-change message")
            return
        self.apply(message)

    async def _close(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            await asyncio.wait_for(pubsub.aclose(), timeout=1.0)
        except (redis.RedisError, OSError, TimeoutError):
            # The connection is being thrown away anyway; the next attempt opens a new one.
            logger.debug("config-change channel: closing a broken connection failed", exc_info=True)

    # -- state changes: one log line each -----------------------------------------------------------
    def _came_up(self) -> None:
        self._up.set()
        self._ever_up = True
        if self._degraded:
            self._degraded = False
            logger.info("Redis at REDIS_URL is reachable again: config changes reach this worker at once")

    def _went_down(self) -> None:
        if self._degraded:
            return
        self._degraded = True
        what = "stopped answering" if self._ever_up else "is unreachable"
        logger.warning(
            "Redis at REDIS_URL %s: config changes reach this worker within TOLLHOUSE_CACHE_TTL (%s s); "
            "retrying in the background",
            what,
            settings.TOLLHOUSE_CACHE_TTL,
        )
