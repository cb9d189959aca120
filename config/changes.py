"""Config changes are broadcast to every gateway worker, however they were written.

Keys, tenants, plans, providers, routes, deployments and prices use `BroadcastManager` (or a
subclass) as their default manager. Each committed change then publishes a message over Redis
pub/sub (in-process without Redis) that tells the workers which cached copy to drop:

- `save()` and `delete()` of an instance: the post_save / post_delete signals (`connect_signals`).
  `QuerySet.delete()` goes through Django's deletion collector, which sends post_delete for every
  row (cascades included) because these models have receivers; so it is covered there too.
- `QuerySet.update()` and `bulk_create()` send no signal: the QuerySet below publishes for them
  (`bulk_update()` is a series of `update()` calls, so it is covered by the first).

Messages are published on commit, never for a rolled-back change, on `channel()`: the Redis prefix +
`config:changed:db<N>`, N being REDIS_URL's database number (pub/sub channels are server-wide). An ApiKey change publishes
`{"kind": "key", "prefix": ...}` per key (a worker drops that key only); anything else publishes
`{"kind": "all"}` (rare changes, cheap to reload). The listening side is gateway/invalidation.py.

This module lives in `config` so that accounts and billing can use it without importing gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save

from config.redis import redis_db, redis_key, sync_client

logger = logging.getLogger(__name__)

CHANNEL = "config:changed"
EVERYTHING: dict[str, str] = {"kind": "all"}

Message = dict[str, str]
Listener = Callable[[Message], None]
# Embedded mode (no Redis, one process): the workers' subscribers listen in-process.
_local_listeners: list[Listener] = []


def channel() -> str:
    """The channel of this installation: pub/sub ignores the database number, so two installations
    on one Redis server (different databases, same prefix) would otherwise drop each other's caches."""
    return redis_key(CHANNEL, f"db{redis_db()}")


def add_local_listener(listener: Listener) -> None:
    _local_listeners.append(listener)


def remove_local_listener(listener: Listener) -> None:
    if listener in _local_listeners:
        _local_listeners.remove(listener)


def publish(messages: Sequence[Message]) -> None:
    """Tell every worker now (one Redis round trip for the lot)."""
    if not messages:
        return
    if settings.REDIS_URL:
        try:
            pipe = sync_client().pipeline(transaction=False)
            for message in messages:
                pipe.publish(channel(), orjson.dumps(message))
            pipe.execute()
            return
        except redis.RedisError:
            logger.warning(
                "config change not broadcast (Redis at REDIS_URL unreachable); "
                "workers catch up within TOLLHOUSE_CACHE_TTL"
            )
    for listener in list(_local_listeners):
        for message in messages:
            listener(message)


def publish_on_commit(messages: Sequence[Message]) -> None:
    """Publish once the surrounding transaction commits (at once outside one; never on rollback)."""
    if messages:
        batch = list(messages)
        transaction.on_commit(lambda: publish(batch))


class BroadcastQuerySet(models.QuerySet[Any]):
    """A QuerySet whose signal-less bulk writes are broadcast on commit like any save()."""

    def change_messages(self, objs: Iterable[Any] | None = None) -> list[Message]:
        """What to publish for a change to `objs`, or (None) to the rows this QuerySet selects."""
        return [EVERYTHING]

    def update(self, **kwargs: Any) -> int:
        # Read what is affected before writing: the update may change what the filter selects.
        messages = self.change_messages()
        rows = super().update(**kwargs)
        if rows:
            publish_on_commit(messages)
        return rows

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        created = super().bulk_create(objs, *args, **kwargs)
        if created:
            publish_on_commit(self.change_messages(created))
        return created


class BroadcastManager(models.Manager.from_queryset(BroadcastQuerySet)):  # type: ignore[misc]
    """Default manager of every model whose changes the gateway caches."""


def _on_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    publish_on_commit(sender._default_manager.get_queryset().change_messages([instance]))


def broadcast_models() -> list[type[models.Model]]:
    from django.apps import apps

    return [model for model in apps.get_models() if isinstance(model._default_manager, BroadcastManager)]


def connect_signals() -> None:
    """Broadcast every save() and delete() of a model that uses a BroadcastManager."""
    for model in broadcast_models():
        name = model._meta.label
        post_save.connect(_on_change, sender=model, dispatch_uid=f"broadcast-save-{name}")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"broadcast-delete-{name}")
