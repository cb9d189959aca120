"""Config changes reach every gateway worker at once: a message over Redis pub/sub.

Any committed write to a key, tenant, plan, provider, route, deployment or price publishes what
changed; every worker's runtime listens and drops the cached copy, so a revoked key stops working
everywhere within milliseconds instead of at the end of TOLLHOUSE_CACHE_TTL. Without Redis
(embedded mode, one process) the message is delivered in-process. The TTL stays as the safety net
for a message lost while a worker was reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from config.redis import async_client, redis_key, sync_client

logger = logging.getLogger(__name__)

CHANNEL = "config:changed"
Listener = Callable[[dict[str, str]], None]
_local_listeners: list[Listener] = []


def channel() -> str:
    return redis_key(CHANNEL)


def publish(message: dict[str, str]) -> None:
    if settings.REDIS_URL:
        try:
            sync_client().publish(channel(), orjson.dumps(message))
            return
        except redis.RedisError:
            logger.warning(
                "config change not broadcast (Redis unreachable); workers catch up within the cache TTL"
            )
    for listener in list(_local_listeners):
        listener(message)


def publish_on_commit(message: dict[str, str]) -> None:
    transaction.on_commit(lambda: publish(message))


def _on_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    from accounts.models import ApiKey

    if isinstance(instance, ApiKey):
        publish_on_commit({"kind": "key", "prefix": instance.prefix})
    else:
        # Tenants, plans, providers, routes, deployments, prices: rarely changed, cheap to reload.
        publish_on_commit({"kind": "all"})


def connect_signals() -> None:
    from accounts.models import ApiKey, Plan, Tenant
    from billing.models import ModelPrice
    from gateway.models import Deployment, ModelRoute, Provider

    for model in (ApiKey, Tenant, Plan, Provider, Deployment, ModelRoute, ModelPrice):
        post_save.connect(_on_change, sender=model, dispatch_uid=f"invalidate-{model.__name__}")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"invalidate-del-{model.__name__}")


class Subscriber:
    """Runs in each gateway worker: applies every config-change message to the local caches."""

    def __init__(self, apply: Listener) -> None:
        self.apply = apply
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if settings.REDIS_URL:
            ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._listen(ready), name="config-invalidation")
            await asyncio.wait_for(asyncio.shield(ready), timeout=5)
        else:
            _local_listeners.append(self.apply)

    async def stop(self) -> None:
        if self.apply in _local_listeners:
            _local_listeners.remove(self.apply)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        while True:
            try:
                pubsub = async_client().pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(channel())
                if not ready.done():
                    ready.set_result(None)
                # Whatever changed while we were not listening: start from a clean slate.
                self.apply({"kind": "all"})
                async for message in pubsub.listen():
                    try:
                        self.apply(orjson.loads(message["data"]))
                    except (orjson.JSONDecodeError, TypeError, KeyError):
                        logger.warning("ignored an unreadable config-change message")
            except (redis.RedisError, OSError):
                if not ready.done():
                    ready.set_result(None)
                logger.warning("config-change channel lost; resubscribing in 1 s")
                await asyncio.sleep(1)
